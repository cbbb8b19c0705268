"""Throughput benchmark v2 (not a test): the trial path vs a plain padded `fit`, side by side.

    python bench/throughput.py [--seeds 3] [--train 3000]     # -> bench/results/throughput.json

Per data set (`amazon` at length 200, `imdb` at length 400, `short` = first 20 words of each
Amazon review at length 100), with the same model (BiGRU(64), embedding 64, vocabulary 10k,
batch 128, masking on), the same split and the same seeds:

- `plain`: `model.fit` on the padded arrays, as Keras users write it;
- `project`: the trial path (`models.training.fit`: length-bucketed batches cut to their
  longest sequence, plus the trial's checkpoint/epoch callbacks).

The arms alternate within each seed (the order flips between seeds) so drift on this shared
host hits both. Speed = examples/s over epochs 2.. (epoch 1 traces); accuracy = best
validation accuracy. `speedup_vs_plain_fit` is the median of per-seed ratios.

Runtime arms (each in a fresh process, amazon, project path, 2 epochs): TensorFlow with oneDNN
off/on and 1/2 intra-op threads; JAX when it is installed; and the cost of a per-batch
callback (a host sync each batch). `predict_cold_start_ratio` = a cold `python -m search
predict` on a bundle, one text, divided by a cold `python -c "import keras"` (medians of 5,
interleaved).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, quiet, write_result

SHARED = ROOT.parent / "shared" / "data"
SIZE = {"cell": "GRU", "bidirectional": True, "embedding_dim": 64, "units": 64, "max_features": 10000,
        "batch_size": 128, "depth": 1, "dropout": 0.0, "regularizer": "none", "initializer": "glorot_uniform",
        "optimizer": "adam", "learning_rate": 0.002}
# name -> (folder under shared/data, sequence length, words kept per text or None)
DATASETS = {"amazon": ("amazon_polarity", 200, None), "imdb": ("imdb", 400, None),
            "short": ("amazon_polarity", 100, 20)}


def find_train(directory: Path) -> Path:
    for name in ("train.txt", "train.txt.gz", "train.ft.txt", "train.ft.txt.gz"):
        if (directory / name).exists():
            return directory / name
    found = sorted(directory.glob("train*"))
    if not found:
        raise SystemExit(f"{directory}: no train file")
    return found[0]


def slice_file(source: Path, out: Path, n: int, words: int | None) -> Path:
    """The first ``n`` lines (balanced by reading in order), optionally cut to ``words`` words."""
    opener = gzip.open if source.suffix == ".gz" else open
    lines = []
    with opener(source, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            if words is not None:
                label, _, text = line.partition(" ")
                line = label + " " + " ".join(text.split()[:words]) + "\n"
            lines.append(line if line.endswith("\n") else line + "\n")
            if len(lines) >= n:
                break
    out.write_text("".join(lines), encoding="utf-8")
    return out


def prepared(name: str, n: int, cache: Path):  # type: ignore[no-untyped-def]
    from data_pipeline import DataSpec, prepare

    folder, length, words = DATASETS[name]
    train = slice_file(find_train(SHARED / folder), cache / f"{name}-{n}.txt", n, words)
    spec = DataSpec(train_file=str(train), validation_fraction=0.25, split_seed=0, cache_dir=str(cache / "npz"))
    return prepare(spec, SIZE["max_features"], length)


def run_arm(arm: str, data, seed: int, epochs: int, workdir: Path,  # type: ignore[no-untyped-def]
            per_batch_hook: bool = False) -> dict[str, Any]:
    import keras

    from models import training
    from models.builder import build_model
    from models.params import ModelParams

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    params = ModelParams(sequence_length=data.x_train.shape[1], **SIZE)
    model = build_model(params, data.n_classes, mask_zero=True)
    times: list[float] = []
    started = [0.0]
    callbacks: list[Any] = [keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs=None: started.__setitem__(0, time.perf_counter()),
        on_epoch_end=lambda e, logs=None: times.append(time.perf_counter() - started[0]))]
    if arm == "project":
        # What a trial adds: NaN guard and the best-epoch checkpoint.
        callbacks += [keras.callbacks.TerminateOnNaN(),
                      keras.callbacks.ModelCheckpoint(str(workdir / "best.h5"), monitor="val_accuracy", mode="max",
                                                      save_best_only=True, verbose=0)]
    if per_batch_hook:
        callbacks.append(keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs=None: None))
    history = training.fit(model, data.x_train, data.y_train, validation=(data.x_val, data.y_val),
                           batch_size=SIZE["batch_size"], epochs=epochs, callbacks=callbacks,
                           bucketing=arm != "plain", seed=seed)
    steady = times[1:] or times
    return {"examples_per_second": len(data.y_train) / statistics.median(steady),
            "first_epoch_s": times[0], "best_val_accuracy": max(history.history["val_accuracy"]),
            "epoch_seconds": [round(t, 3) for t in times]}


def dataset_results(name: str, n: int, seeds: list[int], epochs: int, cache: Path) -> dict[str, Any]:
    from data_pipeline.batching import BatchPlan, bucket_boundaries, padded_positions, sequence_lengths

    data = prepared(name, n, cache)
    lengths = sequence_lengths(data.x_train)
    plan = BatchPlan(lengths, SIZE["batch_size"], bucket_boundaries(lengths, data.x_train.shape[1]))
    computed, _ = padded_positions(lengths, plan.ordered())
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "project": []}
    for i, seed in enumerate(seeds):
        order = ("plain", "project") if i % 2 == 0 else ("project", "plain")
        for arm in order:
            with tempfile.TemporaryDirectory() as tmp:
                result = run_arm(arm, data, seed, epochs, Path(tmp))
            runs[arm].append(result)
            print(f"{name} seed {seed} {arm}: {result['examples_per_second']:.0f} ex/s, "
                  f"val {result['best_val_accuracy']:.4f}", flush=True)
    ratios = [p["examples_per_second"] / q["examples_per_second"] for p, q in zip(runs["project"], runs["plain"],
                                                                                    strict=True)]
    mean_val = {arm: statistics.mean(r["best_val_accuracy"] for r in rs) for arm, rs in runs.items()}
    return {
        "sequence_length": int(data.x_train.shape[1]), "n_train": len(data.y_train), "n_val": len(data.y_val),
        "mean_tokens": round(float(lengths.mean()), 1), "boundaries": plan.boundaries,
        "positions_computed_share": round(computed / data.x_train.size, 3),
        "plain_examples_per_second": round(statistics.median(r["examples_per_second"] for r in runs["plain"]), 1),
        "project_examples_per_second": round(statistics.median(r["examples_per_second"] for r in runs["project"]),
                                             1),
        "speedup_vs_plain_fit": round(statistics.median(ratios), 3),
        "speedup_per_seed": [round(r, 3) for r in ratios],
        "plain_val_accuracy_mean": round(mean_val["plain"], 4),
        "project_val_accuracy_mean": round(mean_val["project"], 4),
        "val_accuracy_delta": round(mean_val["project"] - mean_val["plain"], 4),
        "first_epoch_s": {arm: [round(r["first_epoch_s"], 2) for r in rs] for arm, rs in runs.items()},
        "runs": runs,
    }


RUNTIME_ARMS = {
    "tensorflow, oneDNN off, 2 threads": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0"},
    "tensorflow, oneDNN on, 2 threads": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
    "tensorflow, oneDNN off, 1 intra-op thread": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0",
                                                   "TF_NUM_INTRAOP_THREADS": "1"},
    "tensorflow, per-batch callback": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0",
                                       "BENCH_PER_BATCH_HOOK": "1"},
    "jax": {"KERAS_BACKEND": "jax"},
}


def runtime_child(n: int, cache: Path, epochs: int) -> None:
    """Runs in a fresh process (backend and TF options are fixed at import)."""
    quiet()
    import keras

    data = prepared("amazon", n, cache)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_arm("project", data, 1, epochs, Path(tmp), per_batch_hook=bool(os.environ.get(
            "BENCH_PER_BATCH_HOOK")))
    result["backend"] = keras.backend.backend()
    print("RESULT " + json.dumps(result), flush=True)


def runtime_results(n: int, cache: Path, epochs: int, repeats: int) -> dict[str, Any]:
    import importlib.util

    out: dict[str, Any] = {}
    for _ in range(repeats):
        for arm, env in RUNTIME_ARMS.items():
            if env.get("KERAS_BACKEND") == "jax" and importlib.util.find_spec("jax") is None:
                out[arm] = {"skipped": "jax is not installed"}
                continue
            proc = subprocess.run([sys.executable, __file__, "--runtime-child", "--train", str(n), "--epochs",
                                   str(epochs)], capture_output=True, text=True, env={**os.environ, **env},
                                  timeout=1800)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                out[arm] = {"error": (proc.stderr or proc.stdout)[-500:]}
                continue
            result = json.loads(lines[-1].removeprefix("RESULT "))
            out.setdefault(arm, {"examples_per_second": [], "first_epoch_s": [], "best_val_accuracy": []})
            for key in ("examples_per_second", "first_epoch_s", "best_val_accuracy"):
                out[arm][key].append(round(result[key], 3))
            print(f"runtime {arm}: {result['examples_per_second']:.0f} ex/s (first epoch "
                  f"{result['first_epoch_s']:.1f} s, val {result['best_val_accuracy']:.4f})", flush=True)
    base = out.get("tensorflow, oneDNN off, 2 threads", {}).get("examples_per_second")
    for result in out.values():
        if base and "examples_per_second" in result:
            result["ratio_vs_tensorflow_default"] = round(statistics.median(result["examples_per_second"])
                                                          / statistics.median(base), 3)
    return out


def cold_start(cache: Path, repeats: int) -> dict[str, Any]:
    """`python -m search predict` on a bundle (one text) vs `python -c "import keras"`, cold processes."""
    quiet()
    import keras

    from data_pipeline import Vectorizer
    from models.builder import build_model
    from models.bundle import MODEL_FILE, write_sidecar
    from models.params import ModelParams

    bundle = cache / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    params = ModelParams(embedding_dim=16, units=8, max_features=50, sequence_length=20)
    build_model(params, 2, mask_zero=True).save(bundle / MODEL_FILE)
    vocabulary = ["", "[UNK]"] + [f"w{i}" for i in range(48)]
    write_sidecar(bundle, vectorizer=Vectorizer(vocabulary, 20), labels=["1", "2"], params=params.to_dict(),
                  extra={"mask_zero": True})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    commands = {"predict": [sys.executable, "-m", "search", "predict", "--model", str(bundle), "great product"],
                "import_keras": [sys.executable, "-c", "import keras"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env, cwd=str(ROOT), timeout=300)
            times[name].append(round(time.perf_counter() - started, 3))
    del keras
    ratio = statistics.median(times["predict"]) / statistics.median(times["import_keras"])
    return {"seconds": times, "predict_cold_start_ratio": round(ratio, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=3000, help="lines read per data set (1/4 become validation)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--runtime-repeats", type=int, default=1)
    parser.add_argument("--only-runtime", action="store_true",
                        help="re-measure only the runtime arms and cold start, keeping the data set results")
    parser.add_argument("--keep-runtime", action="store_true",
                        help="re-measure only the data sets, keeping the stored runtime arms and cold start")
    parser.add_argument("--runtime-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache = ROOT / ".cache" / "bench" / "throughput"
    cache.mkdir(parents=True, exist_ok=True)
    if args.runtime_child:
        runtime_child(args.train, cache, args.epochs)
        return
    quiet()
    import keras

    from models.runtime import configure_accelerator

    device = configure_accelerator()
    seeds = list(range(1, args.seeds + 1))
    body: dict[str, Any] = {
        "command": f"python bench/throughput.py --train {args.train} --seeds {args.seeds} --epochs {args.epochs}",
        "backend": keras.backend.backend(), "device": device, "size": SIZE, "seeds": seeds,
        "epochs_per_arm": args.epochs, "datasets": {},
    }
    name_of_result = "throughput" if device.endswith("CPU") else "throughput_gpu"
    from common import RESULTS

    stored = RESULTS / f"{name_of_result}.json"
    kept = json.loads(stored.read_text()) if stored.exists() else {}  # read before anything is rewritten
    if args.only_runtime:
        body.update({k: kept[k] for k in ("command", "seeds", "epochs_per_arm", "datasets")})
    for name in [] if args.only_runtime else args.datasets:
        body["datasets"][name] = dataset_results(name, args.train, seeds, args.epochs, cache)
        # Partial results as each data set finishes, keeping what is stored for the other parts.
        write_result(name_of_result, {**kept, **body}, merge=False)
    if args.keep_runtime:
        body.update({k: kept[k] for k in ("runtime_command", "runtime", "cold_start")})
    else:
        body["runtime_command"] = (f"python bench/throughput.py --only-runtime --train {args.train} "
                                   f"--runtime-repeats {args.runtime_repeats}")
        body["runtime"] = runtime_results(args.train, cache, 2, args.runtime_repeats)
        body["cold_start"] = cold_start(cache, 5)
    body["predict_cold_start_ratio"] = body["cold_start"]["predict_cold_start_ratio"]
    body["goals"] = goals_of(body)
    write_result(name_of_result, body, merge=False)
    print(json.dumps(body["goals"], indent=1), flush=True)


def goals_of(body: dict[str, Any]) -> dict[str, bool]:
    goals = {"amazon": 2.0, "imdb": 1.3, "short": 3.0}
    return {
        **{f"speedup_{k}>={v}": body["datasets"][k]["speedup_vs_plain_fit"] >= v for k, v in goals.items()
           if k in body["datasets"]},
        **{f"|val_accuracy_delta_{k}|<=0.005": abs(d["val_accuracy_delta"]) <= 0.005
           for k, d in body["datasets"].items()},
        "predict_cold_start_ratio<=1.5": body["predict_cold_start_ratio"] <= 1.5,
    }


if __name__ == "__main__":
    main()
