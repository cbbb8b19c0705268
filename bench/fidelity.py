"""Fidelity bench (not a test): is a fraction of the training set a better early rung than an epoch?

    python bench/fidelity.py --config studies/amazon.yaml --trials 12

Multi-fidelity search prunes on a cheap early measurement. Over epochs that is the validation
accuracy after the first epoch(s) on all training data; over the training-set fraction it is
the accuracy after training on a subset. Which one to use is decided by how well the cheap
measurement ranks configurations by their final quality, per unit of cost.

The same ``--trials`` configurations (random draws from the study's search space, one seed)
are trained three ways with the project's objective (no pruning, no early stopping):

  full        all training examples, ``--epochs`` epochs (the target: the best epoch)
  subset_25   a quarter of the training examples, 2 epochs
  subset_50   half of the training examples, 2 epochs

Each configuration has the same trial number, and so the same Keras seed, in every arm (when no
trial fails), and every subset trial trains on the same subset (``training.max_train_examples``
draws it with the data's ``split_seed``). For each cheap measurement (cost in full-data epochs)
the result gives Spearman's rank correlation with the target and the regret of keeping the
measurement's top third: the true best minus the best target among those kept, the loss a rung
that promotes a third would cause.

Resumable: each arm's study is stored under .cache/bench/fidelity/<study>/ and continues where
it stopped. Writes bench/results/fidelity.json (one entry per config, merged).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import optuna
from common import ROOT, merged_results, quiet, write_result

ARMS = {"full": None, "subset_25": 0.25, "subset_50": 0.5}


def run_arm(config_path: str, arm: str, n_trials: int, epochs: int, seed: int,
            params: list[dict[str, Any]] | None) -> optuna.Study:
    from data_pipeline import load_corpus
    from search.config import load_config
    from search.objective import Objective

    fraction = ARMS[arm]
    # The study's sampler and pruner are set below; the config gives data, space and training.
    overrides: dict[str, Any] = {"seed": seed, "enqueue": [], "training.patience": 0,
                                 "training.max_epochs": epochs if fraction is None else 2}
    config = load_config(ROOT / config_path, overrides=overrides)
    config = config.model_copy(update={"data": config.data.resolved(ROOT)})
    work = ROOT / ".cache" / "bench" / "fidelity" / config.study_name
    work.mkdir(parents=True, exist_ok=True)
    if fraction is not None:
        n_train = len(load_corpus(config.data).y_train)
        training = config.training.model_copy(update={"max_train_examples": int(n_train * fraction)})
        config = config.model_copy(update={"training": training})
    storage = f"sqlite:///{work}/{arm}.db"
    # No pruner: every configuration trains all its epochs (Optuna's default would prune by median).
    study = optuna.create_study(study_name=arm, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=optuna.pruners.NopPruner())
    objective = Objective(config)
    if params is None:  # the full arm draws the configurations
        while len(finished(study)) < n_trials:
            # Offset by the trials so far, so a resumed run does not draw the same points again.
            study.sampler = optuna.samplers.RandomSampler(seed=seed + len(study.trials))
            study.optimize(objective, n_trials=1, catch=(Exception,))
            print(f"{config.study_name} {arm}: {len(finished(study))}/{n_trials}", flush=True)
        return study
    for wanted in params:  # the subset arms train the same configurations
        if key(wanted) not in {key(t.params) for t in finished(study)}:
            study.enqueue_trial(wanted)
            study.optimize(objective, n_trials=1, catch=(Exception,))
            print(f"{config.study_name} {arm}: {len(finished(study))}/{len(params)}", flush=True)
    return study


def key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(params.items()))


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def regret_of_top_third(cheap: list[float], target: list[float]) -> float:
    keep = max(1, math.ceil(len(cheap) / 3))
    kept = sorted(range(len(cheap)), key=lambda i: -cheap[i])[:keep]
    return round(max(target) - max(target[i] for i in kept), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="studies/amazon.yaml")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the full-data arm (the target)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    quiet()
    from scipy.stats import spearmanr

    full_trials = finished(run_arm(args.config, "full", args.trials, args.epochs, args.seed, None))[:args.trials]
    params = [dict(t.params) for t in full_trials]
    subsets = {arm: run_arm(args.config, arm, len(params), args.epochs, args.seed, params)
               for arm in ARMS if arm != "full"}
    target = [max(t.intermediate_values.values()) for t in full_trials]
    # cheap measurement -> (cost in full-data epochs, value per configuration)
    cheap: dict[str, tuple[float, list[float]]] = {
        "full_epoch_1": (1.0, [t.intermediate_values[0] for t in full_trials]),
        "full_best_of_2": (2.0, [max(t.intermediate_values[0], t.intermediate_values[1]) for t in full_trials]),
    }
    for arm, study in subsets.items():
        fraction = ARMS[arm]
        assert fraction is not None
        by_params = {key(t.params): t for t in finished(study)}
        rows = [by_params.get(key(p)) for p in params]
        if any(r is None for r in rows):
            raise SystemExit(f"{arm}: not every configuration finished; run again to complete it")
        cheap[f"{arm}_epoch_1"] = (fraction, [r.intermediate_values[0] for r in rows])  # type: ignore[union-attr]
        cheap[f"{arm}_best_of_2"] = (2 * fraction, [max(r.intermediate_values.values()) for r in rows])  # type: ignore[union-attr]
    measures = {name: {"cost_epochs": cost, "spearman": round(float(spearmanr(values, target).statistic), 3),
                       "regret_top_third": regret_of_top_third(values, target)}
                for name, (cost, values) in sorted(cheap.items(), key=lambda kv: kv[1][0])}
    entry = {"command": f"python bench/fidelity.py --config {args.config} --trials {args.trials} "
                        f"--epochs {args.epochs} --seed {args.seed}",
             "configurations": len(params), "target": f"best validation accuracy over {args.epochs} full epochs",
             "target_best": round(max(target), 4), "target_median": round(sorted(target)[len(target) // 2], 4),
             "measures": measures}
    write_result("fidelity", {"results": merged_results("fidelity", {args.config: entry})})
    for name, m in measures.items():
        print(f"{name:22s} cost {m['cost_epochs']:.2f}  spearman {m['spearman']:+.3f}  "
              f"regret(top third) {m['regret_top_third']:.4f}", flush=True)


if __name__ == "__main__":
    main()
