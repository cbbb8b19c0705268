"""Accelerator set-up: GPU memory growth, optional mixed precision, CPU fallback."""

from __future__ import annotations

import logging

import keras

log = logging.getLogger(__name__)


def configure_accelerator(mixed_precision: bool = False) -> str:
    """Use the GPU(s) this process was given (CUDA_VISIBLE_DEVICES), else the CPU.

    Returns a short description such as ``"tensorflow: 1 GPU"`` or ``"tensorflow: CPU"``.
    """
    backend = keras.backend.backend()
    n_gpus = 0
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                # Grow on demand so one worker per GPU does not grab all memory up front.
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialized: harmless
                pass
        n_gpus = len(gpus)
    elif backend == "jax":
        import jax

        n_gpus = sum(1 for d in jax.devices() if d.platform == "gpu")
    elif backend == "torch":
        import torch

        n_gpus = torch.cuda.device_count()
    if mixed_precision:
        if n_gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            log.warning("mixed_precision requested but no GPU: staying with float32")
    return f"{backend}: {n_gpus} GPU" if n_gpus else f"{backend}: CPU"
