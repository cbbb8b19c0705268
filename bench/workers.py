"""Workers-per-host benchmark (not a test): one worker with all cores vs one worker per core.

    python bench/workers.py [--config studies/amazon.yaml] [--repeats 2]   # -> bench/results/workers.json

Both arms run the same fixed trials (enqueued, no pruning, no tracking) through the real CLI
(`python -m search init`, then `worker --target-trials N`) against one SQLite study:

  one_worker       one `worker` process, TensorFlow's default threads (all cores)
  worker_per_core  one `worker` process per core, each with `--cpu-threads 1`

Small recurrent steps hardly use a second intra-op thread, so the question is whether running
one worker per core finishes the same trials sooner. Arms alternate (A B B A ...) so drift on
this shared host hits both; `speedup` is the median of (one_worker wall / worker_per_core wall)
per repeat. The trials' validation accuracies are recorded to show both arms did the same work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import ROOT, write_result

# Every cell type, uni- and bidirectional, at one mid-size: what a search spends its time on.
TRIALS = [{"cell": cell, "bidirectional": bi, "depth": 1, "embedding_dim": 64, "units": 64, "max_features": 10000,
           "sequence_length": 200, "dropout": 0.2, "regularizer": "none", "initializer": "glorot_uniform",
           "optimizer": "adam", "learning_rate": 0.002, "batch_size": 64, "pooling": "mean"}
          for cell in ("GRU", "LSTM", "SimpleRNN") for bi in (True, False)]


def study_config(source: Path, workdir: Path, epochs: int, max_train: int) -> Path:
    config = yaml.safe_load(source.read_text())
    config.update({"study_name": "workers-bench", "storage": f"sqlite:///{workdir}/study.db", "seed": 1,
                   "sampler": {"type": "random"}, "pruner": {"type": "none"}, "enqueue": TRIALS,
                   "warm_start": {}})
    config["training"] = {**config.get("training", {}), "max_epochs": epochs, "patience": 0,
                          "max_train_examples": max_train}
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_arm(arm: str, source: Path, epochs: int, max_train: int) -> dict[str, Any]:
    import optuna

    n_workers = 1 if arm == "one_worker" else (os.cpu_count() or 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    threads = [] if arm == "one_worker" else ["--cpu-threads", "1"]
    with tempfile.TemporaryDirectory(prefix=f"workers-{arm}-") as tmp:
        config = study_config(source, Path(tmp), epochs, max_train)
        base = [sys.executable, "-m", "search"]
        # init also creates the MLflow experiment: a throw-away store, since the workers do not track.
        subprocess.run([*base, "init", "--config", str(config), "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"],
                       check=True, cwd=ROOT, env=env, capture_output=True, timeout=600)
        started = time.perf_counter()
        procs = [subprocess.Popen([*base, "worker", "--config", str(config), "--no-tracking", *threads,
                                   "--target-trials", str(len(TRIALS))], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(n_workers)]
        errors = [p.communicate(timeout=3600)[1] for p in procs]
        wall = time.perf_counter() - started
        if any(p.returncode for p in procs):
            raise SystemExit(f"{arm}: a worker failed: {[e[-400:] for e in errors]}")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name="workers-bench", storage=f"sqlite:///{tmp}/study.db")
        done = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.params["cell"]
                      + str(t.params["bidirectional"]))
    return {"arm": arm, "workers": n_workers, "wall_seconds": round(wall, 1), "complete": len(done),
            "val_accuracy": {f"{'Bi' if t.params['bidirectional'] else ''}{t.params['cell']}": round(t.value, 4)
                             for t in done}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="studies/amazon.yaml", help="data and space come from this study")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=2000, help="training examples per trial")
    args = parser.parse_args()
    source = ROOT / args.config
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        order = ("one_worker", "worker_per_core") if repeat % 2 == 0 else ("worker_per_core", "one_worker")
        for arm in order:
            run = run_arm(arm, source, args.epochs, args.max_train)
            run["repeat"] = repeat
            print(f"{arm} (repeat {repeat}): {run['wall_seconds']} s for {run['complete']} trials", flush=True)
            runs.append(run)
    ratios = []
    for repeat in range(args.repeats):
        wall = {r["arm"]: r["wall_seconds"] for r in runs if r["repeat"] == repeat}
        ratios.append(wall["one_worker"] / wall["worker_per_core"])
    body = {
        "command": f"python bench/workers.py --config {args.config} --repeats {args.repeats} --epochs {args.epochs} "
                   f"--max-train {args.max_train}",
        "trials": TRIALS, "epochs_per_trial": args.epochs, "cpus": os.cpu_count(), "runs": runs,
        "speedup_per_repeat": [round(r, 3) for r in ratios], "speedup": round(statistics.median(ratios), 3),
    }
    path = write_result("workers", body, merge=False)
    print(f"speedup of one worker per core: {body['speedup']} (per repeat {body['speedup_per_repeat']}) -> {path}")


if __name__ == "__main__":
    main()
