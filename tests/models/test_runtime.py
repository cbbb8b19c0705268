from __future__ import annotations

import keras

from models.runtime import configure_accelerator


def test_cpu_fallback_and_mixed_precision_without_gpu() -> None:
    description = configure_accelerator(mixed_precision=True)
    assert description.startswith(f"{keras.backend.backend()}: ")
    if description.endswith("CPU"):
        # No GPU: the switch is refused and the policy stays float32.
        assert keras.mixed_precision.global_policy().name == "float32"
    else:
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        keras.mixed_precision.set_global_policy("float32")
