"""Accelerator set-up: GPU memory growth, optional mixed precision, CPU fallback."""

from __future__ import annotations

import logging

import keras

log = logging.getLogger(__name__)


def configure_accelerator(mixed_precision: bool = False, cpu_threads: int | None = None) -> str:
    """Use the GPU(s) this process was given (CUDA_VISIBLE_DEVICES), else the CPU.

    ``cpu_threads`` caps the backend's intra-op threads (None: its default, every core). Small
    recurrent steps hardly use a second thread, so one worker per core with one thread each
    trains more per host (bench/results/workers.json). Must run before the backend's first op.

    Returns a short description such as ``"tensorflow: 1 GPU"`` or ``"tensorflow: CPU, 1 intra-op thread"``.
    """
    backend = keras.backend.backend()
    n_gpus = 0
    n_threads: int | None = None  # as the backend reports it back
    if backend == "tensorflow":
        import tensorflow as tf

        if cpu_threads is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(cpu_threads)
            except RuntimeError as exc:  # the runtime already started: too late to change
                raise RuntimeError(f"cpu_threads: {exc}") from None
            n_threads = tf.config.threading.get_intra_op_parallelism_threads()

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

        if cpu_threads is not None:
            # XLA reads its CPU thread count from XLA_FLAGS before jax is imported.
            log.warning("cpu_threads is not applied on the jax backend; set XLA_FLAGS before start-up")
        n_gpus = sum(1 for d in jax.devices() if d.platform == "gpu")
    elif backend == "torch":
        import torch

        if cpu_threads is not None:
            torch.set_num_threads(cpu_threads)
            n_threads = torch.get_num_threads()
        n_gpus = torch.cuda.device_count()
    if mixed_precision:
        if n_gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            log.warning("mixed_precision requested but no GPU: staying with float32")
    threads = "" if n_threads is None else f", {n_threads} intra-op thread{'' if n_threads == 1 else 's'}"
    return f"{backend}: {n_gpus} GPU{threads}" if n_gpus else f"{backend}: CPU{threads}"
