"""Throughput benchmark (not a test): examples/s per cell x bidirectional, and padding/masking.

    python bench/throughput.py [--data ../shared/data/amazon_polarity]   # -> bench/results/throughput.json

Fixed size (embedding 64, units 64, vocabulary 10k, length 200, batch 128). Speed is
measured on a second epoch (the first traces the graph). The padding/masking arms train
BiGRU for a few epochs on the same split and seed and report validation accuracy too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import ROOT, quiet, write_result

SIZE = {"embedding_dim": 64, "units": 64, "max_features": 10000, "sequence_length": 200, "batch_size": 128,
        "depth": 1, "dropout": 0.0, "regularizer": "none", "initializer": "glorot_uniform",
        "optimizer": "adam", "learning_rate": 0.002}


def spec_for(data_dir: Path, cache: Path, padding: str):  # type: ignore[no-untyped-def]
    from data_pipeline import DataSpec

    return DataSpec(train_file=str(data_dir / "train.txt"), validation_fraction=0.2, split_seed=0,
                    padding=padding, truncating=padding, cache_dir=str(cache))


def examples_per_second(cell: str, bidirectional: bool, data, n: int) -> float:  # type: ignore[no-untyped-def]
    import keras

    from models.builder import build_model
    from models.params import ModelParams

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_model(ModelParams(cell=cell, bidirectional=bidirectional, **SIZE), data.n_classes)
    x, y = data.x_train[:n], data.y_train[:n]
    model.fit(x[: SIZE["batch_size"] * 2], y[: SIZE["batch_size"] * 2], batch_size=SIZE["batch_size"], verbose=0)
    started = time.perf_counter()
    model.fit(x, y, batch_size=SIZE["batch_size"], epochs=1, verbose=0)
    return n / (time.perf_counter() - started)


def padding_arm(data, mask_zero: bool, epochs: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import keras

    from models.builder import build_model
    from models.params import ModelParams

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_model(ModelParams(cell="GRU", bidirectional=True, **SIZE), data.n_classes, mask_zero=mask_zero)
    started = time.perf_counter()
    history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                        batch_size=SIZE["batch_size"], verbose=0)
    seconds = time.perf_counter() - started
    return {"best_val_accuracy": max(history.history["val_accuracy"]),
            "examples_per_second": len(data.y_train) * epochs / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon_polarity"))
    parser.add_argument("--examples", type=int, default=2048, help="examples per speed measurement")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per padding/masking arm")
    args = parser.parse_args()
    quiet()
    import keras

    from data_pipeline import prepare
    from models.runtime import configure_accelerator

    device = configure_accelerator()

    data_dir, cache = Path(args.data), ROOT / ".cache" / "bench"
    pre = prepare(spec_for(data_dir, cache, "pre"), SIZE["max_features"], SIZE["sequence_length"])
    speed = {}
    for cell in ("SimpleRNN", "GRU", "LSTM"):
        for bidirectional in (False, True):
            name = ("Bi" if bidirectional else "") + cell
            speed[name] = round(examples_per_second(cell, bidirectional, pre, args.examples), 1)
            print(f"{name}: {speed[name]} examples/s", flush=True)
    post = prepare(spec_for(data_dir, cache, "post"), SIZE["max_features"], SIZE["sequence_length"])
    masking = {}
    for padding, data in (("pre", pre), ("post", post)):
        for mask in (False, True):
            arm = f"{padding}-padding, mask {'on' if mask else 'off'}"
            masking[arm] = {k: round(v, 4) for k, v in padding_arm(data, mask, args.epochs).items()}
            print(arm, masking[arm], flush=True)
    # A GPU run (e.g. KERAS_BACKEND=jax on a lent accelerator) writes throughput_gpu.json beside the CPU one.
    write_result("throughput" if device.endswith("CPU") else "throughput_gpu", {
        "command": "python bench/throughput.py", "data": str(data_dir.name), "size": SIZE,
        "backend": keras.backend.backend(), "examples_per_second": speed, "padding_masking": masking,
        "epochs_per_arm": args.epochs, "device": device,
    }, merge=False)


if __name__ == "__main__":
    main()
