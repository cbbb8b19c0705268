"""Search-quality benchmark (not a test): the recommended study under a wall-clock budget.

    python bench/search_quality.py --config studies/amazon.yaml --budget 7200 --reference 0.886
    python bench/search_quality.py --config studies/imdb.yaml   --budget 7200 --reference 0.850

Runs `python -m search run` on a fresh study (own storage and MLflow store under
.cache/bench/), then writes bench/results/search_<study>.json: best validation accuracy, the
champion's test accuracy, trials and epochs used, and when validation accuracy first passed the
reference (the notebooks' best test accuracy).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

import optuna
from common import ROOT, quiet, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--budget", type=float, default=7200.0, help="wall-clock seconds for the search")
    parser.add_argument("--reference", type=float, required=True, help="accuracy to beat")
    args = parser.parse_args()
    quiet()
    from mlflow import MlflowClient

    from search.config import load_config

    config = load_config(ROOT / args.config)
    work = ROOT / ".cache" / "bench" / f"search-{config.study_name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    storage, tracking = f"sqlite:///{work}/study.db", f"sqlite:///{work}/mlflow.db"
    command = [sys.executable, "-m", "search", "run", "--config", str(ROOT / args.config), "--storage", storage,
               "--tracking-uri", tracking, "--timeout", str(args.budget), "--n-trials", "100000"]
    started = time.time()
    subprocess.run(command, cwd=ROOT, check=True)
    wall = time.time() - started
    study = optuna.load_study(study_name=config.study_name, storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    epochs = sum(len(t.intermediate_values) for t in finished)
    passed_at = None
    for t in sorted(finished, key=lambda t: t.datetime_complete or t.datetime_start):
        if t.value is not None and t.value > args.reference and t.datetime_complete:
            passed_at = (t.datetime_complete - study.trials[0].datetime_start).total_seconds()
            break
    client = MlflowClient(tracking)
    champion = client.get_model_version_by_alias(config.model_name, "champion")
    test_accuracy = client.get_run(champion.run_id).data.metrics.get("test_accuracy")
    result = {
        "command": " ".join(["python", "bench/search_quality.py", "--config", args.config, "--budget",
                             str(int(args.budget)), "--reference", str(args.reference)]),
        "budget_seconds": args.budget, "wall_seconds": round(wall, 1),
        "best_val_accuracy": study.best_value, "best_params": study.best_params,
        "champion_test_accuracy": test_accuracy, "reference_accuracy": args.reference,
        "champion_beats_reference": bool(test_accuracy is not None and test_accuracy > args.reference),
        "trials": len(study.trials), "finished_trials": len(finished),
        "pruned_trials": sum(t.state == optuna.trial.TrialState.PRUNED for t in finished),
        "epochs_run": epochs, "val_passed_reference_after_seconds": passed_at,
    }
    path = write_result(f"search_{config.study_name}", result, merge=False)
    print(f"best val {study.best_value:.4f}, champion test {test_accuracy}, {len(finished)} trials, "
          f"{epochs} epochs -> {path}")


if __name__ == "__main__":
    main()
