"""Efficiency benchmark (not a test): which search strategy finds good models with the least compute.

    python bench/efficiency.py --config studies/amazon.yaml --epochs 96 --max-epochs 4 --seeds 1 2 3 4 5 6 7 8

Four arms on the same data split, the same per-arm budget of training epochs and the same seeds:

  tpe_successive_halving  the recommended default: the baseline trial (a generic hand-tuner's
                 BiGRU, search/warm_start.py), then TPE (multivariate) + successive halving over
                 epochs (Hyperband's first bracket alone, so TPE sees every trial)
  tpe_median     TPE (multivariate) + median pruner, no baseline (recommended before this bench)
  random         random sampling over the same space, no pruning
  notebook_grid  the notebooks' 24-point grid: regularizer x initializer x optimizer on a fixed
                 bidirectional LSTM (grid order shuffled by the seed, as Optuna's GridSampler does)

The default budget, 96 epochs, is what one pass of the notebooks' grid costs (24 points x 4 epochs),
enough for ~24 unpruned trials (TPE's model takes over after 8) and many more pruned ones.

Each arm runs the project's real worker loop and objective (no tracking: it is not what is
compared). Every trained epoch reports validation accuracy, so "best validation accuracy after
N epochs" is read off the trials' intermediate values in the order they ran; a trial that
crosses the budget is cut at the budget, and an arm that runs out of things to try (the grid)
keeps its best for the rest of the budget. Wall-clock curves place each epoch at its trial's
start + the trial's set-up time + the epoch times the objective records (``epoch_seconds``).
Warm starts (`enqueue`) are dropped so no arm starts from a known answer for this data set; the
baseline trial is the same generic model on every data set. Extra arms (`--arms NAME`, measured
on the same seeds): `tpe_hyperband` (the baseline + TPE + Hyperband, the default before
successive halving), `tpe_hyperband_no_baseline` (without the baseline trial),
`tpe_sh_startup4` (the recommended arm with TPE's model from the 5th trial instead of the 9th),
`tpe_sh_rung1` (the recommended arm with its first rung after one epoch, see Steps below),
`tpe_sh_transfer` (the recommended arm with `sampler.portfolio: true`: the best two
configurations of different architecture from each search bench on another data set, IMDB and
Reuters-46, mapped onto this space, run first), `tpe_sh_neighbours` (the recommended arm
with `sampler.startup: baseline_neighbours`: TPE's 7 start-up trials after the baseline are the
baseline with one group of knobs sampled, search/warm_start.py, instead of random draws;
5 seeds: 0.8456 / 0.8504 / 0.8532, ahead at 25 %, behind at 100 %), `tpe_sh_weights` (the
recommended arm with `warm_start.weights`: every trial starts from the baseline model trained 2
epochs on IMDB, WEIGHTS_SOURCE, written by `make source-imdb`; its architecture is then fixed; the
source's 173-228 s of training are outside the epoch budget).
tpe_sh_transfer's stored runs are of the current PORTFOLIO, re-run with the fixed steps
(`--rerun-stale`); an earlier two-entry table (one
champion per data set) scored 0.8462 / 0.8498 / 0.8574 at 25 / 50 / 100 % on these 5 seeds and
reached random's best in 0.596 of the budget (bench/results/efficiency.md at commit 1bb6320).

Steps: trials report epochs trained (1, 2, ...) as the pruning step. Until commit bab8dd8 they
reported Keras' 0-based epoch index, which put every rung one epoch late; runs stored from then
lack the key `steps` and are marked † in efficiency.md. For the recommended arm the first rung
was after epoch 2 then as now (`min_resource` 2 in the new count); its second rung fell on the
final epoch and only relabelled trials that had trained every epoch as pruned, which TPE ranks
below complete ones.
`tpe_sh_rung1` (first rung after epoch 1, `min_resource` 1 in the new count, 5 seeds with the
fixed steps) was the candidate and lost: behind at half the budget and slower to random's best.
The recommended arm was re-run with the fixed steps (5 seeds, commit 4221093): 0.8412 /
0.8514 / 0.8580 at 25 / 50 / 100 % against 0.8412 / 0.8544 / 0.8590 stored before, random's best
in 0.527 of the budget as before. Of the other pruned arms measured then, transfer was re-run
with `--rerun-stale` (0.8414 / 0.8498 / 0.8566 against 0.8442 / 0.8488 / 0.8634 before);
Hyperband was re-run too (0.8428 / 0.8468 / 0.8518 against 0.8396 / 0.8448 / 0.8548 before);
start-up 4 was not re-run.
`tpe_median` runs as before (`n_warmup_steps` 2 in the new count is the old 1).

    epochs_ratio_vs_random = epochs the recommended arm needs to reach random's final best / budget

A seed on which it never reaches random's best counts as 1.0 (a lower bound) and is listed.

Seeds: the four default arms were run on seeds 1-5, then extended to seeds 6-8 (commit
de6e2ce's code, two one-thread processes). The extra arms stay on seeds 1-5; efficiency.md
shows them in their own table over the seeds they share with the default arms (`extra_arms`
in the JSON), so the headline keys are over all 8 seeds and the extra arms' over 5.

Resumable: each finished (arm, seed) is stored in bench/results/efficiency.json at once, and a
re-run with the same config/budget skips them (an arm cut off mid-way starts again). Writes
efficiency.json, efficiency.md and efficiency.html (plotly, CDN script).

Parallel: several processes started with the same command share the work. Each claims an
(arm, seed) before running it and merges its results into the stored ones under a file lock.
On 2 cores, two processes with `--cpu-threads 1` (`make bench-efficiency JOBS=2`)
finish sooner than one process with 2 threads, because small recurrent steps hardly use a
second thread. Epochs and accuracies do not depend on this; wall seconds do.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import statistics
import time
from typing import Any

import optuna
from common import RESULTS, ROOT, quiet, write_json, write_result

# The notebooks' grid (its optimizer bug aside): 4 regularizers x 3 initializers x 2 optimizers.
# The fixed model is their bidirectional LSTM at a CPU-friendly size; the regularizer strength
# is not given in the notebooks, so a moderate 1e-4 is used (Keras' own default of 1e-2 would
# handicap the grid).
NOTEBOOK_GRID: dict[str, dict[str, Any]] = {
    "cell": {"value": "LSTM"},
    "bidirectional": {"value": True},
    "depth": {"value": 1},
    "embedding_dim": {"value": 64},
    "units": {"value": 64},
    "max_features": {"value": 5500},
    "sequence_length": {"value": 200},
    "dropout": {"value": 0.2},
    "regularizer": {"choices": ["none", "l1", "l2", "l1l2"]},
    "regularizer_strength": {"value": 1e-4},
    "initializer": {"choices": ["random_normal", "glorot_uniform", "he_normal"]},
    "optimizer": {"choices": ["adam", "rmsprop"]},
    "learning_rate": {"value": 1e-3},
    "batch_size": {"value": 64},
    "pooling": {"value": "last"},
}

RECOMMENDED = "tpe_successive_halving"
# The fewest seeds an arm is reported on (the issue's minimum for a comparison).
MIN_SEEDS = 5
ARMS = (RECOMMENDED, "tpe_median", "random", "notebook_grid")
# Not in the default set: Hyperband (the recommended strategy before successive halving), what
# the baseline trial contributes, and candidates for the next default.
EXTRA_ARMS = ("tpe_hyperband", "tpe_hyperband_no_baseline", "tpe_sh_startup4", "tpe_sh_transfer", "tpe_sh_rung1",
              "tpe_sh_neighbours", "tpe_sh_weights")
# The source bundle of arm tpe_sh_weights (`make source-imdb`): the baseline trial's model trained
# for 2 epochs on IMDB. Its training (173-228 s here) is not in the arm's epoch budget.
WEIGHTS_SOURCE = ".cache/sources/imdb-baseline"
WEIGHTS_SOURCE_CONFIG = "studies/imdb.yaml"  # the data the source was trained on
# Not run, derived at summary time: tpe_sh_weights with the source's training charged to its epoch
# budget (source_charge_epochs), so it is compared with the other arms at equal total compute.
CHARGED = "tpe_sh_weights_charged"
DERIVED_ARMS = (CHARGED,)
# The portfolio (search/warm_start.py: the best of the search bench on other data sets) is
# off except in the arm that measures it, tpe_sh_transfer; it holds neither this data set's own
# results nor the short-text set's (cut from Amazon reviews).
TPE = {"type": "tpe", "multivariate": True, "n_startup_trials": 8, "baseline_trial": True, "portfolio": False}
CHECKPOINTS = (25, 50, 100)  # percent of the epoch budget
# Pruners whose rungs sit at a step count, so their arms depend on what a step is.
RUNG_PRUNERS = ("successive_halving", "hyperband")


def arm_overrides(arm: str, seed: int, max_epochs: int) -> dict[str, Any]:
    # Dotted keys override single fields of the study config (see search.config.parse_config).
    base: dict[str, Any] = {"seed": seed, "enqueue": [], "training.max_epochs": max_epochs}
    if arm.startswith("tpe_hyperband"):
        base["sampler"] = {**TPE, "baseline_trial": arm == "tpe_hyperband"}
        base["pruner"] = {"type": "hyperband", "min_resource": 1, "reduction_factor": 3}
    elif arm.startswith("tpe_s"):  # same rungs as Hyperband's first bracket, TPE sees every trial
        # tpe_sh_startup4: TPE's model after 4 trials (baseline + 3 random) instead of 8. With few
        # trials its "good" set is the best one, so it searches around the best-so-far early.
        # tpe_sh_neighbours: the start-up trials after the baseline are its neighbours (one group
        # of knobs left to the sampler each) instead of random draws.
        base["sampler"] = {**TPE, "n_startup_trials": 4} if arm == "tpe_sh_startup4" else \
            {**TPE, "startup": "baseline_neighbours"} if arm == "tpe_sh_neighbours" else \
            {**TPE, "portfolio": arm == "tpe_sh_transfer"}
        if arm == "tpe_sh_weights":  # every trial starts from IMDB weights (warm_start.weights)
            base["warm_start"] = {"weights": str(ROOT / WEIGHTS_SOURCE)}
        # The first rung after epoch 2 (the default): where the stored runs had it. tpe_sh_rung1
        # moves it to epoch 1 (then a second rung after epoch 3).
        base["pruner"] = {"type": "successive_halving", "min_resource": 1 if arm == "tpe_sh_rung1" else 2,
                          "reduction_factor": 3}
    elif arm == "tpe_median":
        base["sampler"] = {**TPE, "baseline_trial": False}
        # Steps count epochs trained: no pruning before the end of the second epoch, as stored.
        base["pruner"] = {"type": "median", "n_startup_trials": 4, "n_warmup_steps": 2}
    elif arm == "random":
        base["sampler"] = {"type": "random"}
        base["pruner"] = {"type": "none"}
    else:
        base["sampler"] = {"type": "grid"}
        base["pruner"] = {"type": "none"}
        base["search_space"] = NOTEBOOK_GRID
    return base


def comparison_fingerprint(config_path: str, max_epochs: int) -> str:
    """SHA-256 of what every arm shares: data, training, search space and constraints after the
    bench's overrides. Edits to what the arms override (seed, sampler, pruner, enqueue) or do
    not use (budget, tracking, workers) keep stored results comparable; another space does not."""
    from search.config import load_config

    config = load_config(ROOT / config_path, overrides=arm_overrides("random", 0, max_epochs))
    shared = config.model_dump(mode="json", include={"data", "training", "search_space", "constraints"})
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()


def curves(study: optuna.Study, budget: int) -> dict[str, Any]:
    """Best validation accuracy so far after each trained epoch (capped at the budget), the wall
    second at which each of those epochs ended, and epochs per trial."""
    trials = sorted(study.trials, key=lambda t: t.number)
    t0 = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    best, curve, wall, per_trial = 0.0, [], [], []
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        per_trial.append(len(steps))
        seconds = list(trial.user_attrs.get("epoch_seconds", []))
        seconds += [0.0] * (len(steps) - len(seconds))
        setup = max(0.0, float(trial.user_attrs.get("train_seconds", sum(seconds))) - sum(seconds))
        clock = (trial.datetime_start - t0).total_seconds() + setup if t0 and trial.datetime_start else 0.0
        for step, sec in zip(steps, seconds, strict=False):
            if len(curve) >= budget:
                break
            clock += sec
            best = max(best, trial.intermediate_values[step])
            curve.append(round(best, 4))
            wall.append(round(clock, 2))
    return {"curve": curve, "wall": wall, "epochs_per_trial": per_trial}


def arm_dir(arm: str, seed: int) -> Any:
    return ROOT / ".cache" / "bench" / "efficiency" / f"{arm}-seed{seed}"


@contextlib.contextmanager
def results_lock() -> Any:
    """Serialises read-merge-write of efficiency.json and claims between bench processes."""
    path = ROOT / ".cache" / "bench" / "efficiency" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim(arm: str, seed: int) -> bool:
    """Take (arm, seed) for this process unless a live process holds it. Call under results_lock."""
    marker = arm_dir(arm, seed).with_suffix(".claim")
    try:
        holder = int(marker.read_text())
    except (OSError, ValueError):
        holder = 0
    if holder and holder != os.getpid():
        try:
            os.kill(holder, 0)
            return False
        except ProcessLookupError:
            pass
    marker.write_text(str(os.getpid()))
    return True


def run_arm(arm: str, config_path: str, seed: int, budget: int, max_epochs: int) -> dict[str, Any]:
    from search.config import load_config
    from search.objective import Objective
    from search.signals import GracefulStop
    from search.study import create_study
    from search.worker import run_worker

    work = arm_dir(arm, seed)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    overrides = arm_overrides(arm, seed, max_epochs)
    overrides["storage"] = f"sqlite:///{work}/study.db"
    config = load_config(ROOT / config_path, overrides=overrides).with_weight_source()
    # Data paths are relative to the repository, like the config path, not to the caller's cwd.
    config = config.model_copy(update={"data": config.data.resolved(ROOT)})
    study = create_study(config, heartbeat=False)
    stop = GracefulStop()

    def stop_at_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        used = sum(len(t.intermediate_values) for t in trials)
        # The trial cap guards against an arm whose trials all fail before training one epoch.
        if used >= budget or len(trials) >= 4 * budget:
            stop.request("epoch budget")

    started = time.perf_counter()
    run_worker(study, Objective(config, stop=stop), target=None, stop=stop, callbacks=[stop_at_budget])
    wall = time.perf_counter() - started
    states = [t.state.name for t in study.trials]
    c = curves(study, budget)
    return {
        # Runs without this key reported Keras' epoch index as the step (rungs one epoch later).
        "arm": arm, "seed": seed, "steps": "epochs_trained", **c, "epochs_used": len(c["curve"]),
        "best_val_accuracy": c["curve"][-1] if c["curve"] else None,
        "trials": len(states), "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"), "wall_seconds": round(wall, 1),
        "best_params": study.best_params if "COMPLETE" in states else None,
        "trial_params": [t.params for t in sorted(study.trials, key=lambda t: t.number)],
    }


def at_epoch(run: dict[str, Any], epochs: int) -> float:
    """Best so far after `epochs` epochs; an arm that stopped early keeps its best."""
    curve = run["curve"]
    return curve[min(epochs, len(curve)) - 1] if curve else 0.0


def at_second(run: dict[str, Any], second: float) -> float:
    best = 0.0
    for value, t in zip(run["curve"], run["wall"], strict=True):
        if t > second:
            break
        best = value
    return best


def arms_in(runs: list[dict[str, Any]], seeds: list[int]) -> tuple[str, ...]:
    """The default arms plus any extra (or derived) arm measured on every one of these seeds."""
    done = {(r["arm"], r["seed"]) for r in runs}
    return ARMS + tuple(a for a in EXTRA_ARMS + DERIVED_ARMS if all((a, s) in done for s in seeds))


def source_sidecar() -> dict[str, Any]:
    from models.layout import SIDECAR_FILE

    return dict(json.loads((ROOT / WEIGHTS_SOURCE / SIDECAR_FILE).read_text(encoding="utf-8")))


@functools.cache
def source_charge_epochs(config_path: str) -> int:
    """The weights source's training in epochs of ``config_path``'s data: tokens the source
    trained on (its training rows at its own vocabulary and sequence length, times its epochs)
    over the tokens of one epoch of the target's training rows at those same parameters, rounded
    up. A recurrent layer's cost grows with tokens (padding is masked and batches are bucketed by
    length), and counting them does not depend on what else runs on this shared machine."""
    from data_pipeline.prepare import prepare
    from search.config import load_config

    sidecar = source_sidecar()
    params, epochs = sidecar["params"], len(sidecar["source_val_accuracy"])

    def tokens(path: str) -> int:
        data = prepare(load_config(ROOT / path).data.resolved(ROOT), params["max_features"], params["sequence_length"])
        return int((data.x_train != 0).sum())

    return math.ceil(epochs * tokens(WEIGHTS_SOURCE_CONFIG) / tokens(config_path))


def with_derived(runs: list[dict[str, Any]], config_path: str, budget: int) -> list[dict[str, Any]]:
    """The stored runs plus the DERIVED_ARMS' runs made from them (never stored)."""
    return runs + charged_runs(runs, config_path, budget)


def charged_runs(runs: list[dict[str, Any]], config_path: str, budget: int) -> list[dict[str, Any]]:
    """Each tpe_sh_weights run as arm CHARGED: its curve starts after the source's epochs (best
    0 until then) and is cut at the budget; its wall clock starts after the source's seconds."""
    weights = [r for r in runs if r["arm"] == "tpe_sh_weights"]
    if not weights:
        return []
    charge = source_charge_epochs(config_path)
    seconds = float(source_sidecar().get("source_seconds", 0.0))
    out = []
    for run in weights:
        curve = ([0.0] * charge + run["curve"])[:budget]
        wall = ([seconds] * charge + [w + seconds for w in run["wall"]])[:budget]
        out.append({**run, "arm": CHARGED, "curve": curve, "wall": wall, "epochs_used": len(curve),
                    "best_val_accuracy": curve[-1], "source_charge_epochs": charge,
                    "wall_seconds": round(run["wall_seconds"] + seconds, 1)})
    return out


def extra_arm_seeds(runs: list[dict[str, Any]], seeds: list[int]) -> list[int]:
    """The seeds shared by every extra arm that is missing from some of ``seeds`` but was measured
    on at least MIN_SEEDS of them (later seeds of the default arms leave earlier candidates behind);
    empty when there is no such arm."""
    done = {(r["arm"], r["seed"]) for r in runs}
    behind = [a for a in EXTRA_ARMS + DERIVED_ARMS if a not in arms_in(runs, seeds)
              and sum((a, s) in done for s in seeds) >= MIN_SEEDS]
    return [s for s in seeds if all((a, s) in done for a in behind)] if behind else []


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    for i, value in enumerate(curve):
        if value >= target:
            return i + 1
    return None


@functools.cache  # summarize() runs after every arm; the corpus does not change
def validation_size(config_path: str) -> int:
    from data_pipeline.prepare import load_corpus
    from search.config import load_config

    return int(load_corpus(load_config(ROOT / config_path).data.resolved(ROOT)).y_val.size)


def paired_stats(diffs: list[float]) -> dict[str, Any]:
    """Recommended minus another arm, one difference per seed: mean, its standard error and the
    seeds the recommended arm wins."""
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return {"mean_difference": round(statistics.mean(diffs), 4), "standard_error": round(se, 4),
            "recommended_wins": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs)}


def paired_differences(by: dict[tuple[str, int], dict[str, Any]], arms: tuple[str, ...], seeds: list[int],
                       epochs: int) -> dict[str, dict[str, Any]]:
    """paired_stats of best validation accuracy after ``epochs`` for each arm. Every run scores
    on the same validation split, so what separates arms is search and training luck, which
    this spread measures."""
    return {arm: paired_stats([at_epoch(by[(RECOMMENDED, s)], epochs) - at_epoch(by[(arm, s)], epochs)
                               for s in seeds])
            for arm in arms if arm != RECOMMENDED}


def summarize(runs: list[dict[str, Any]], seeds: list[int], budget: int, n_val: int | None = None) -> dict[str, Any]:
    by = {(r["arm"], r["seed"]): r for r in runs}
    arms = arms_in(runs, seeds)
    # Epochs each arm needs to reach random's final best, per seed, for every arm (the headline
    # ratio is the recommended arm's; the others' make candidates comparable with it).
    needed = {arm: {s: epochs_to_reach(by[(arm, s)]["curve"], by[("random", s)]["best_val_accuracy"]) for s in seeds}
              for arm in arms if arm != "random"}
    ratio = {arm: {s: 1.0 if n is None else round(n / budget, 3) for s, n in per.items()}
             for arm, per in needed.items()}
    to_random_best = {arm: {"mean": round(statistics.mean(r.values()), 3), "worst": max(r.values()),
                            "seeds_not_reaching": [s for s, n in needed[arm].items() if n is None]}
                      for arm, r in ratio.items()}
    per_seed = []
    for seed in seeds:
        rec, rnd = by[(RECOMMENDED, seed)], by[("random", seed)]
        # TPE's start-up trials are random draws from the same seed as the random arm: a target
        # reached inside that shared prefix says nothing about the model-based part.
        shared = 0
        for a, b in zip(rec["trial_params"], rnd["trial_params"], strict=False):
            if a != b:
                break
            shared += 1
        reached = needed[RECOMMENDED][seed]
        per_seed.append({"seed": seed, "random_best": rnd["best_val_accuracy"], "epochs_to_random_best": reached,
                         "epochs_ratio_vs_random": ratio[RECOMMENDED][seed], "shared_startup_trials": shared,
                         "reached_inside_shared_trials": reached is not None
                         and reached <= sum(rec["epochs_per_trial"][:shared])})
    at: dict[str, dict[str, dict[str, float]]] = {}
    for pct in CHECKPOINTS:
        epochs = max(1, budget * pct // 100)
        at[str(pct)] = {}
        for arm in arms:
            values = [at_epoch(by[(arm, s)], epochs) for s in seeds]
            at[str(pct)][arm] = {"mean": round(statistics.mean(values), 4),
                                 "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}
    mean_of = {pct: {arm: v["mean"] for arm, v in arms.items()} for pct, arms in at.items()}
    # One accuracy on n_val examples estimates accuracy on new data with this binomial standard
    # error: the most a validation gain between arms can promise on a test set.
    p = mean_of["100"][RECOMMENDED]
    noise = {"validation_size": n_val,
             "accuracy_standard_error": round((p * (1 - p) / n_val) ** 0.5, 4) if n_val else None,
             "paired_vs_recommended": {str(pct): paired_differences(by, arms, seeds, max(1, budget * pct // 100))
                                       for pct in CHECKPOINTS}}
    return {**noise,
        "recommended_arm": RECOMMENDED,
        "per_seed": per_seed,
        "epochs_ratio_vs_random_mean": to_random_best[RECOMMENDED]["mean"],
        "epochs_ratio_vs_random_worst": to_random_best[RECOMMENDED]["worst"],
        "seeds_not_reaching_random_best": to_random_best[RECOMMENDED]["seeds_not_reaching"],
        "goal_epochs_ratio_mean": 0.40,
        "epochs_ratio_vs_random_by_arm": to_random_best,
        "best_val_accuracy_at": at,
        "beats_grid_at": {p: mean_of[p][RECOMMENDED] >= mean_of[p]["notebook_grid"] for p in mean_of},
        "beats_random_at": {p: mean_of[p][RECOMMENDED] >= mean_of[p]["random"] for p in mean_of},
        "beats_tpe_median_at": {p: mean_of[p][RECOMMENDED] >= mean_of[p]["tpe_median"] for p in mean_of},
        "mean_wall_seconds": {arm: round(statistics.mean(by[(arm, s)]["wall_seconds"] for s in seeds), 1)
                              for arm in arms},
    }


def figure(runs: list[dict[str, Any]], seeds: list[int], budget: int, path: Any) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("vs cumulative training epochs", "vs wall-clock seconds"))
    # Cycled, so a new arm gets a colour instead of breaking the figure.
    palette = ("#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
    colours = dict(zip(ARMS + EXTRA_ARMS + DERIVED_ARMS, itertools.cycle(palette)))
    walls = [r["wall"][-1] for r in runs if r["seed"] in seeds and r["wall"]]
    horizon = statistics.median(walls) if walls else 1.0
    grids = {"epochs": list(range(1, budget + 1)), "seconds": [horizon * i / 200 for i in range(1, 201)]}
    for arm in arms_in(runs, seeds):
        arm_runs = [r for r in runs if r["arm"] == arm and r["seed"] in seeds]
        if not arm_runs:
            continue
        for col, (key, read) in enumerate((("epochs", at_epoch), ("seconds", at_second)), start=1):
            xs = grids[key]
            rows = [[read(r, x) for x in xs] for r in arm_runs]
            mean = [statistics.mean(c) for c in zip(*rows, strict=True)]
            sd = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in zip(*rows, strict=True)]
            colour = colours[arm]
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=[m + s for m, s in zip(mean, sd, strict=True)]
                                     + [m - s for m, s in zip(mean[::-1], sd[::-1], strict=True)],
                                     fill="toself", fillcolor=colour, opacity=0.15, line={"width": 0},
                                     hoverinfo="skip", showlegend=False, legendgroup=arm), row=1, col=col)
            fig.add_trace(go.Scatter(x=xs, y=mean, mode="lines", line={"color": colour, "shape": "hv"},
                                     name=f"{arm} (mean ± sd, {len(arm_runs)} seeds)", legendgroup=arm,
                                     showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="cumulative epochs", row=1, col=1)
    fig.update_xaxes(title_text="wall seconds", row=1, col=2)
    fig.update_yaxes(title_text="best validation accuracy so far", row=1, col=1)
    fig.update_layout(title="Anytime performance: best validation accuracy so far", template="plotly_white")
    fig.write_html(path, include_plotlyjs="cdn")


def stale(run: dict[str, Any], max_epochs: int) -> bool:
    """A run of a rung-pruned arm stored before steps counted epochs trained (rungs one epoch late)."""
    return "steps" not in run and arm_overrides(run["arm"], 0, max_epochs)["pruner"]["type"] in RUNG_PRUNERS


def arm_table(result: dict[str, Any], s: dict[str, Any], seeds: list[int],
              every: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """Rows of the anytime table for the arms of summary ``s`` over ``seeds``, and whether any
    pruned arm among them was stored before steps counted epochs trained (marked †)."""
    lines = ["| arm | 25 % | 50 % | 100 % | random's best reached, share of budget | trials (complete/pruned), mean "
             "| wall s, mean |", "|---|---|---|---|---|---|---|"]
    stepped_before_fix = False
    n = len(seeds)
    for arm in s["best_val_accuracy_at"]["100"]:
        runs = [r for r in every if r["arm"] == arm and r["seed"] in seeds]
        cells = [f"{s['best_val_accuracy_at'][p][arm]['mean']:.4f} ± {s['best_val_accuracy_at'][p][arm]['sd']:.4f}"
                 for p in ("25", "50", "100")]
        trials = f"{sum(r['trials'] for r in runs) / n:.1f} ({sum(r['complete'] for r in runs) / n:.1f}/" \
                 f"{sum(r['pruned'] for r in runs) / n:.1f})"
        ratio = s["epochs_ratio_vs_random_by_arm"].get(arm)
        never = ratio["seeds_not_reaching"] if ratio else []
        reached = "—" if ratio is None else f"{ratio['mean']:.3f}" + (
            f" (never on seed{'s' if len(never) > 1 else ''} {', '.join(map(str, never))})" if never else "")
        name = f"**{arm}** (recommended)" if arm == RECOMMENDED else arm
        if any(stale(r, result["max_epochs"]) for r in runs):
            name += " †"
            stepped_before_fix = True
        lines.append(f"| {name} | {' | '.join(cells)} | {reached} | {trials} | {s['mean_wall_seconds'][arm]} |")
    return lines, stepped_before_fix


def paired_table(s: dict[str, Any], n: int) -> list[str]:
    lines = ["| arm | 25 % | 50 % | 100 % |", "|---|---|---|---|"]
    for arm in s["paired_vs_recommended"]["100"]:
        cells = [f"{d['mean_difference']:+.4f} ± {d['standard_error']:.4f} ({d['recommended_wins']}/{n})"
                 for d in (s["paired_vs_recommended"][p][arm] for p in ("25", "50", "100"))]
        lines.append(f"| {arm} | {' | '.join(cells)} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [f"# Efficiency: {result['config']}, {result['epoch_budget']} epochs per arm, "
             f"max {result['max_epochs']} per trial, seeds {', '.join(map(str, result['seeds']))}", "",
             f"`{result['command']}`", ""]
    if len(result["seeds"]) < len(result["seeds_planned"]):
        lines += [f"Partial: {len(result['seeds'])} of {len(result['seeds_planned'])} planned seeds measured; "
                  "re-running the command continues with the rest.", ""]
    lines += ["Wall seconds depend on other load on the (shared) machine; epochs do not.", "",
              "Best validation accuracy so far, mean ± sd over seeds, at a share of the epoch budget:", ""]
    # The stored runs and the derived arms' (made once for both tables).
    every = with_derived(result["runs"], result["config"], result["epoch_budget"])
    table, stepped_before_fix = arm_table(result, s, result["seeds"], every)
    lines += table
    n = len(result["seeds"])

    def verdict(flags: dict[str, bool]) -> str:
        return ", ".join(f"{p} %: {'yes' if ok else 'no'}" for p, ok in flags.items())

    mean_ok = "met" if s["epochs_ratio_vs_random_mean"] <= s["goal_epochs_ratio_mean"] else "missed"
    lines += ["", f"- `epochs_ratio_vs_random_mean` **{s['epochs_ratio_vs_random_mean']}** (goal <= "
              f"{s['goal_epochs_ratio_mean']}: {mean_ok}); worst seed {s['epochs_ratio_vs_random_worst']}"
              + (f"; seeds {s['seeds_not_reaching_random_best']} never reached random's best (counted as 1.0)"
                 if s["seeds_not_reaching_random_best"] else ""),
              f"- recommended at or above the grid: {verdict(s['beats_grid_at'])}",
              f"- recommended at or above random: {verdict(s['beats_random_at'])}",
              f"- recommended at or above TPE+median: {verdict(s['beats_tpe_median_at'])}", ""]
    if CHARGED in s["best_val_accuracy_at"]["100"] or CHARGED in (
            (result.get("extra_arms") or {}).get("summary", {}).get("best_val_accuracy_at", {}).get("100", {})):
        charge = source_charge_epochs(result["config"])
        lines += [f"`{CHARGED}` is `tpe_sh_weights` with its source's training charged to the budget: "
                  f"{charge} epochs of this data set (the source's training tokens over one epoch's here, "
                  f"at the source's vocabulary and sequence length), so its curve starts at epoch {charge + 1} "
                  f"and it has {result['epoch_budget'] - charge} epochs of its own. Without the charge the "
                  "source counts as an earlier study's output, free to every later study.", ""]
    if s.get("validation_size"):
        lines += [f"Noise: the validation split has {s['validation_size']} examples, so one accuracy near "
                  f"{s['best_val_accuracy_at']['100'][RECOMMENDED]['mean']:.3f} has a binomial standard error of "
                  f"{s['accuracy_standard_error']:.4f} as an estimate of accuracy on new data. All runs score on "
                  f"that one split; recommended minus each arm, paired by seed, mean ± standard error "
                  f"(seeds the recommended arm wins), seeds {', '.join(map(str, result['seeds']))}:", "",
                  *paired_table(s, n), ""]
    for row in s["per_seed"]:
        lines.append(f"- seed {row['seed']}: random's best {row['random_best']}, reached by {RECOMMENDED} after "
                     f"{row['epochs_to_random_best']} epochs (ratio {row['epochs_ratio_vs_random']}); "
                     f"{row['shared_startup_trials']} start-up trials shared with random"
                     + (" (reached inside them)" if row["reached_inside_shared_trials"] else ""))
    lines.append("")
    extra = result.get("extra_arms")
    if extra:
        seeds = extra["seeds"]
        table, stepped = arm_table(result, extra["summary"], seeds, every)
        stepped_before_fix |= stepped
        lines += [f"**Extra arms, measured on seeds {', '.join(map(str, seeds))} only** (candidates that lost "
                  "or were replaced, and options that need more than a config, such as a trained source "
                  "model; not run on the later seeds); every arm over those same seeds:", "",
                  *table, "", "Recommended minus each arm over those seeds, paired by seed, mean ± standard "
                  "error (seeds the recommended arm wins):", "", *paired_table(extra["summary"], len(seeds)), ""]
    if stepped_before_fix:
        lines += ["† measured when the objective reported Keras' 0-based epoch index as the step, so each "
                  "rung fell one epoch later (successive halving at `min_resource` 1: after epochs 2 and 4, "
                  "and a trial that survived epoch 2 but not epoch 4 was marked pruned after training every "
                  "epoch). Steps now count epochs trained; arms without † were measured so (the recommended "
                  "arm was re-run). The median pruner's arm runs as before (`n_warmup_steps` 2 in the new "
                  "count).", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="studies/amazon.yaml")
    parser.add_argument("--epochs", type=int, default=96, help="training epochs per arm")
    parser.add_argument("--max-epochs", type=int, default=4, help="epochs per trial (all arms)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS + EXTRA_ARMS)
    parser.add_argument("--rerun-stale", action="store_true",
                        help="re-run (and replace) stored runs of rung-pruned arms marked †")
    parser.add_argument("--resummarize", action="store_true", help="rewrite summary, markdown and figure only")
    parser.add_argument("--cpu-threads", type=int, default=None, help="intra-op threads (as `worker --cpu-threads`)")
    args = parser.parse_args()
    quiet()
    if args.cpu_threads is not None:
        from models.runtime import configure_accelerator

        configure_accelerator(cpu_threads=args.cpu_threads)  # before the first training op
    path = RESULTS / "efficiency.json"
    # Resuming adds to the stored runs only under the same budget and the same shared config
    # (comparison_fingerprint): another search space or data set starts the comparison again.
    config_sha = hashlib.sha256((ROOT / args.config).read_bytes()).hexdigest()
    space_sha = comparison_fingerprint(args.config, args.max_epochs)
    key = (args.config, args.epochs, args.max_epochs, 2)

    def stored() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        previous = json.loads(path.read_text()) if path.exists() else {}
        same = (previous.get("config"), previous.get("epoch_budget"), previous.get("max_epochs"),
                previous.get("version")) == key and (
            # Results stored before the fingerprint existed match on the config file's text.
            previous.get("comparison_sha256") == space_sha if "comparison_sha256" in previous
            else previous.get("config_sha256", config_sha) == config_sha)
        return previous, list(previous.get("runs", [])) if same else []

    previous, runs = stored()
    if previous and not runs and previous.get("runs") and not args.resummarize:
        print(f"{path}: other budget or search space; starting the comparison again", flush=True)
        write_json(path, {})  # so a concurrent process does not merge the old comparison back in

    def done(arm: str, seed: int, among: list[dict[str, Any]], stale_counts: bool = True) -> bool:
        return any(r["arm"] == arm and r["seed"] == seed and (stale_counts or not stale(r, args.max_epochs))
                   for r in among)

    def save(new: dict[str, Any] | None = None) -> None:
        """Merge `new` with what every process has stored so far and rewrite all outputs; `new`
        replaces a stale run of its (arm, seed)."""
        merged = stored()[1]
        if new is not None and not done(new["arm"], new["seed"], merged, stale_counts=False):
            merged = [r for r in merged if (r["arm"], r["seed"]) != (new["arm"], new["seed"])] + [new]
        seeds = sorted(set(args.seeds) | {r["seed"] for r in merged})
        complete = [s for s in seeds if all(done(a, s, merged) for a in ARMS)]
        command = (f"python bench/efficiency.py --config {args.config} --epochs {args.epochs} "
                   f"--max-epochs {args.max_epochs} --seeds {' '.join(map(str, seeds))}")
        result: dict[str, Any] = {
            "version": 2, "command": command, "config": args.config, "config_sha256": config_sha,
            "comparison_sha256": space_sha,
            "epoch_budget": args.epochs,
            "max_epochs": args.max_epochs, "seeds": complete, "seeds_planned": seeds, "runs": merged,
            "notebook_grid_space": NOTEBOOK_GRID, "arms": list(ARMS),
        }
        if complete:
            summarized = with_derived(merged, args.config, args.epochs)
            result["summary"] = summarize(summarized, complete, args.epochs, validation_size(args.config))
            extra_seeds = extra_arm_seeds(summarized, complete)
            if extra_seeds:
                result["extra_arms"] = {"seeds": extra_seeds, "summary": summarize(
                    summarized, extra_seeds, args.epochs, validation_size(args.config))}
            result.update({k: result["summary"][k] for k in (
                "epochs_ratio_vs_random_mean", "epochs_ratio_vs_random_worst", "beats_grid_at", "beats_random_at")})
            (RESULTS / "efficiency.md").write_text(markdown(result))
            figure(summarized, complete, args.epochs, RESULTS / "efficiency.html")
        write_result("efficiency", result, merge=False)

    if not args.resummarize:
        # Seed-major order: every finished seed is a complete comparison of all arms.
        for seed in sorted(args.seeds):
            # The arm order rotates with the seed, so the process's one-off warm-up (imports,
            # first vectorization of each data variant) does not always land on the same arm.
            order = args.arms[seed % len(args.arms):] + args.arms[:seed % len(args.arms)]
            for arm in order:
                with results_lock():
                    if done(arm, seed, stored()[1], stale_counts=not args.rerun_stale) or not claim(arm, seed):
                        continue
                run = run_arm(arm, args.config, seed, args.epochs, args.max_epochs)
                print(f"{arm} seed {seed}: best {run['best_val_accuracy']} in {run['epochs_used']} epochs, "
                      f"{run['trials']} trials ({run['pruned']} pruned), {run['wall_seconds']} s", flush=True)
                with results_lock():
                    save(run)
    with results_lock():
        save()
    print(f"-> {path}", flush=True)


if __name__ == "__main__":
    main()
