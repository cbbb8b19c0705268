from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


CPU_THREADS_PROBE = """
import keras
from models.runtime import configure_accelerator
print(configure_accelerator(cpu_threads=1))
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    print("intra", tf.config.threading.get_intra_op_parallelism_threads())
    keras.ops.ones(2)  # the first op starts the runtime
    try:
        configure_accelerator(cpu_threads=2)
    except RuntimeError as exc:
        print("late", exc)
"""


def test_cpu_threads_reach_the_backend_and_a_late_change_is_refused() -> None:
    # A fresh process: the thread count can only be set before the backend's first op.
    out = subprocess.run([sys.executable, "-c", CPU_THREADS_PROBE], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].endswith("CPU, 1 intra-op thread") or "GPU" in lines[0]
    if keras.backend.backend() == "tensorflow":
        assert "intra 1" in lines
        assert any(line.startswith("late cpu_threads:") for line in lines)
