"""Storage throughput benchmark (not a test): trivial objective, several processes, one study.

    make bench-storage       # writes bench/results/storage.json and storage.md

For SQLite, JournalFileBackend and PostgreSQL (a throw-away local cluster) with 1, 2, 4, 8
processes: trials/s, p50/p95 ask->tell latency, and lost/duplicated trials.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from common import RESULTS, quiet, write_result


def open_storage(kind: str, location: str):  # type: ignore[no-untyped-def]
    import optuna

    if kind == "journal":
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(location))
    from search.storage import make_storage

    return make_storage(location)


def worker(args: tuple[str, str, str, int]) -> tuple[float, float, list[float]]:
    import optuna

    kind, location, study_name, n = args
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=open_storage(kind, location),
                              sampler=optuna.samplers.RandomSampler())
    latencies = []
    first = time.time()
    for _ in range(n):
        started = time.perf_counter()
        trial = study.ask()
        x = trial.suggest_float("x", -1.0, 1.0)
        study.tell(trial, x * x)
        latencies.append(time.perf_counter() - started)
    return first, time.time(), latencies


def run_case(kind: str, location: str, processes: int, per_process: int) -> dict[str, float]:
    import numpy as np
    import optuna

    name = f"{kind}-{processes}-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=open_storage(kind, location))  # created once, up front
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(worker, [(kind, location, name, per_process)] * processes)
    # From the first ask to the last tell: process start-up is not storage time.
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    latencies = np.array([x for r in results for x in r[2]]) * 1000
    trials = optuna.load_study(study_name=name, storage=open_storage(kind, location)).get_trials()
    numbers = [t.number for t in trials]
    expected = processes * per_process
    return {
        "processes": processes, "trials": len(trials), "seconds": round(elapsed, 3),
        "trials_per_second": round(len(trials) / elapsed, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "lost": expected - sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
        "duplicated": len(numbers) - len(set(numbers)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-process", type=int, default=50)
    parser.add_argument("--processes", default="1,2,4,8")
    args = parser.parse_args()
    quiet()
    counts = [int(p) for p in args.processes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    from tests.conftest import Postgres

    pg = Postgres()
    rows = []
    try:
        backends = {
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "journal": str(tmp / "journal.log"),
            "postgresql": pg.url(),
        }
        for kind, location in backends.items():
            for n in counts:
                row = {"backend": kind, **run_case(kind, location, n, args.per_process)}
                rows.append(row)
                print(row, flush=True)
    finally:
        pg.destroy()
    write_result("storage", {"command": "make bench-storage", "per_process": args.per_process, "rows": rows},
                 merge=False)
    header = "| backend | processes | trials/s | p50 ms | p95 ms | lost | duplicated |\n|---|---|---|---|---|---|---|\n"
    lines = [f"| {r['backend']} | {r['processes']} | {r['trials_per_second']} | {r['p50_ms']} | {r['p95_ms']} | "
             f"{r['lost']} | {r['duplicated']} |" for r in rows]
    (RESULTS / "storage.md").write_text(
        f"# Storage throughput (trivial objective, {args.per_process} trials per process)\n\n"
        f"Command: `make bench-storage`. Machine and versions: `storage.json`.\n\n" + header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
