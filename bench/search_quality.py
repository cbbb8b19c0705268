"""Search-quality benchmark (not a test): the recommended study under a wall-clock budget.

    python bench/search_quality.py --config studies/amazon.yaml --budget 7200 --reference 0.886 --goal 0.890
    python bench/search_quality.py --config studies/imdb.yaml   --budget 7200 --reference 0.850 --goal 0.900

Runs `python -m search run` on a fresh study (own storage and MLflow store under
.cache/bench/), then writes bench/results/search_<study>.json: best validation accuracy, the
champion's test accuracy, trials and epochs used, and when validation accuracy first passed the
reference (the notebooks' best test accuracy), plus a per-trial log and a breakdown of best
validation accuracy and minutes per epoch by model family, sequence length and vocabulary.
`--resummarize` rebuilds that log from the study kept under .cache/bench/.

The budget is a hard wall clock: `--timeout` stops new trials, and a trial still running when
the budget is spent gets SIGTERM (the worker stops it at the next batch and re-queues it);
the champion is then registered from the trials that finished. Its epochs still count.
`--workers N` runs `init` and N `worker` processes on the same study instead of one `run`
(each with `--cpu-threads` cores/N; see bench/workers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from common import RESULTS, ROOT, quiet, write_json, write_result

# Trial attributes the breakdown groups by: model family, then the two data-shape choices.
BREAKDOWN = (("model", "model"), ("sequence_length", "sequence length"), ("max_features", "vocabulary"))


def study_config(path: str):  # type: ignore[no-untyped-def]
    """The study config as its workers see it (with a ``warm_start.weights`` source's
    architecture fixed), so the baseline is recognised among the enqueued trials."""
    from search.config import load_config

    return load_config(ROOT / path).with_weight_source()


def work_dir(study_name: str) -> Path:
    """Where a run keeps its study and MLflow store (kept after the run for --resummarize)."""
    return ROOT / ".cache" / "bench" / f"search-{study_name}"


def trial_log(study: optuna.Study) -> list[dict]:
    """One row per trial that trained at least one epoch: what it was, what it reached, what it cost."""
    rows = []
    for t in study.trials:
        if not t.intermediate_values:
            continue
        # A trial cut by the budget has no end time; its cost per epoch stays unknown.
        minutes = (t.datetime_complete - t.datetime_start).total_seconds() / 60 if t.datetime_complete else None
        rows.append({"number": t.number, "state": t.state.name, "epochs": len(t.intermediate_values),
                     "best_epoch_val_accuracy": round(max(t.intermediate_values.values()), 4),
                     "minutes": None if minutes is None else round(minutes, 2), "params": t.params})
    return rows


def stagnation_replay(study: optuna.Study, limits: tuple[int, ...] = (10, 20, 30)) -> dict[str, dict]:
    """When ``max_stagnation_trials: N`` would have stopped this study, replayed from its trials:
    stopping only cuts the tail (the trials before the stop are the same), so this is exact up
    to the trials still running at the stop, which finish first."""
    from search.worker import trials_since_best

    trials = [t for t in study.trials if t.datetime_complete is not None]
    start = min(t.datetime_start for t in study.trials if t.datetime_start is not None)
    best_value = max((t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE), default=None)
    stops: dict[str, dict] = {}
    done: list[optuna.trial.FrozenTrial] = []
    # One pass in completion order; what the workers see at each moment is the trials done by then.
    for t in sorted(trials, key=lambda t: t.datetime_complete):  # type: ignore[arg-type, return-value]
        done.append(t)
        values = [float(d.value) for d in sorted(done, key=lambda d: d.number)
                  if d.state == optuna.trial.TrialState.COMPLETE and d.value is not None]
        stagnant = trials_since_best(values)
        for limit in limits:
            if str(limit) not in stops and stagnant >= limit:
                stops[str(limit)] = {
                    "stop_minutes": round((t.datetime_complete - start).total_seconds() / 60, 1),  # type: ignore[operator]
                    "epochs_by_then": sum(len(d.intermediate_values) for d in done),
                    "best_val_accuracy": round(max(values), 4), "same_best_as_full_run": max(values) == best_value}
    return {str(limit): stops.get(str(limit), {"stop_minutes": None}) for limit in limits}


def chance_level(study: optuna.Study, config) -> dict:  # type: ignore[no-untyped-def]
    """Share of trials that trained an epoch but never beat the majority class by 2 points."""
    import numpy as np

    from data_pipeline import load_corpus

    y_val = load_corpus(config.data.resolved(ROOT)).y_val
    chance = float(np.bincount(y_val).max() / len(y_val))
    trained = [max(t.intermediate_values.values()) for t in study.trials if t.intermediate_values]
    at_chance = [v for v in trained if v <= chance + 0.02]
    return {"chance_level_accuracy": round(chance, 4), "chance_level_trials": len(at_chance),
            "chance_level_trial_share": round(len(at_chance) / len(trained), 3) if trained else None,
            "derived_from_data": study.user_attrs.get("derived_from_data")}


def enqueued_test_accuracy(study: optuna.Study, tracking: str, config) -> list[dict]:  # type: ignore[no-untyped-def]
    """Test accuracy of each enqueued trial's best checkpoint, scored like the
    champion: the hand-tuned reference trained on *this* data, next to what the search found."""
    from search.registry import has_bundle, score_run_on_test
    from search.tracking import MlflowTracker

    tracker = MlflowTracker(tracking, config.experiment_name, read_only=True)
    rows = []
    for t in study.trials:
        if "fixed_params" not in t.system_attrs or t.state != optuna.trial.TrialState.COMPLETE \
                or not has_bundle(tracker, t):
            continue
        accuracy = score_run_on_test(tracker, t.user_attrs["mlflow_run_id"], config.data.resolved(ROOT))
        rows.append({"number": t.number, "source": enqueued_source(t, config),
                     "val_accuracy": round(float(t.value or 0.0), 4),
                     "test_accuracy": round(accuracy, 4), "params": t.params})
    return rows


def enqueued_source(trial: optuna.trial.FrozenTrial, config) -> str:  # type: ignore[no-untyped-def]
    """Where an enqueued trial came from: a worker re-queued an interrupted trial, the config's
    ``enqueue`` (hand-picked), the portfolio, the baseline (its data-independent parameters match; data-derived
    ones are the middle choices), or a warm-start source."""
    from search.warm_start import BASELINE, PORTFOLIO, map_params

    if "requeued_from" in trial.user_attrs:
        return f"re-queued trial {trial.user_attrs['requeued_from']}"
    fixed = trial.system_attrs["fixed_params"]
    if any(fixed == dict(entry) for entry in config.enqueue):
        return "hand-picked"
    for entry in PORTFOLIO if config.sampler.runs_portfolio else ():
        if fixed == map_params(entry["params"], config.search_space, entry["choices"]):
            return f"portfolio ({entry['source']})"
    baseline = map_params(BASELINE, config.search_space)
    if config.sampler.runs_baseline and all(fixed.get(k) == v for k, v in baseline.items()):
        return "baseline"
    return "warm start"


def champion_fields(study: optuna.Study, tracking: str, config, args) -> dict:  # type: ignore[no-untyped-def]
    """What the registry's ``champion`` is and scores on the test file; for an ensemble also
    the test accuracy of its best trial alone (what a single-model champion would score)."""
    from mlflow import MlflowClient

    from search.registry import score_run_on_test
    from search.tracking import MlflowTracker

    client = MlflowClient(tracking)
    version = client.get_model_version_by_alias(config.model_name, "champion")
    run = client.get_run(version.run_id)
    members = [int(n) for n in run.data.tags.get("ensemble_trials", "").split(",") if n]
    test_accuracy = run.data.metrics.get("test_accuracy")
    best = study.best_trial
    fields = {
        "champion_test_accuracy": test_accuracy,
        "champion": {"kind": "ensemble" if members else "trial", "trials": members or [best.number],
                     "val_accuracy": run.data.metrics.get("val_accuracy", best.value) if members else best.value},
        "goal_met": None if args.goal is None else bool(test_accuracy is not None and test_accuracy >= args.goal),
        "champion_beats_reference": None if args.reference is None else bool(
            test_accuracy is not None and test_accuracy > args.reference),
    }
    if members and config.data.test_file:
        tracker = MlflowTracker(tracking, config.experiment_name, read_only=True)
        fields["best_trial_test_accuracy"] = score_run_on_test(
            tracker, best.user_attrs["mlflow_run_id"], config.data.resolved(ROOT))
    return fields


def breakdown_markdown(rows: list[dict]) -> str:
    """Best validation accuracy and cost per model family / sequence length / vocabulary (pandas groupby)."""
    import pandas as pd

    if not rows:
        return ""
    frame = pd.DataFrame([{**r["params"], **{k: v for k, v in r.items() if k != "params"}} for r in rows])
    frame["model"] = frame["bidirectional"].map({True: "Bi", False: ""}) + frame["cell"] + " x" + \
        frame["depth"].astype(str)
    frame["minutes_per_epoch"] = frame["minutes"] / frame["epochs"]
    parts = ["\nWhat the trials say (every trial that trained an epoch; best epoch's validation accuracy):\n"]
    for column, label in BREAKDOWN:
        table = frame.groupby(column).agg(
            trials=("number", "size"), best=("best_epoch_val_accuracy", "max"),
            median_val=("best_epoch_val_accuracy", "median"), min_per_epoch=("minutes_per_epoch", "median"),
        ).sort_values("best", ascending=False)
        lines = [f"\n| {label} | trials | best val | median val | median min/epoch |", "|---|---|---|---|---|"]
        lines += [f"| {key} | {int(r.trials)} | {r.best:.4f} | {r.median_val:.4f} | "
                  f"{'n/a' if pd.isna(r.min_per_epoch) else f'{r.min_per_epoch:.1f}'} |"
                  for key, r in table.iterrows()]
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def champion_rows(r: dict) -> str:
    """The champion's rows when it is an ensemble (a single trial is the best-validation row)."""
    c = r.get("champion")
    if not c or c["kind"] != "ensemble":
        return ""
    built = "" if r.get("registered_seconds") is None else f"; registered in {r['registered_seconds']:.0f} s"
    alone = r.get("best_trial_test_accuracy")
    return (f"| champion | ensemble of {len(c['trials'])} trials ({', '.join(map(str, c['trials']))}), mean "
            f"probability; validation accuracy {c['val_accuracy']:.4f}{built} |\n"
            + (f"| best trial alone, test accuracy | {alone:.4f} |\n" if alone is not None else ""))


def markdown(name: str, r: dict) -> str:
    goal = r.get("goal_test_accuracy")
    verdict = "n/a" if goal is None else ("met" if r["goal_met"] else "missed")
    passed = r["val_passed_reference_after_seconds"]
    curve = ", ".join(f"{v:.4f} @ {s / 60:.0f} min" for s, v in r["best_val_accuracy_over_time"])
    return (
        f"# Search quality: {name}\n\n`{r['command']}` ({r['machine']['cpus']} CPUs, {r['written_at']})\n\n"
        "| measure | value |\n|---|---|\n"
        f"| wall-clock budget | {r['budget_seconds'] / 60:.0f} min (hard stop: {r['hard_stopped']}) |\n"
        + (f"| note | {r['note']} |\n" if r.get("note") else "")
        + (f"| strategy | sampler {r['strategy']['sampler']}, pruner {r['strategy']['pruner']} |\n"
           if "strategy" in r else "")
        + f"| trials (finished / pruned) | {r['trials']} ({r['finished_trials']} / {r['pruned_trials']}) |\n"
        f"| epochs trained | {r['epochs_run']} |\n"
        f"| best validation accuracy | {r['best_val_accuracy']:.4f} |\n"
        + champion_rows(r)
        + f"| champion test accuracy | {r['champion_test_accuracy']:.4f} (goal {goal}: {verdict}) |\n"
        f"| notebooks' best test accuracy | {r['reference_accuracy']} |\n"
        f"| validation first above it after | {'never' if passed is None else f'{passed / 60:.0f} min'} |\n"
        f"| best validation accuracy over time | {curve} |\n"
        + (f"| trials at chance level (<= {r['chance_level_accuracy'] + 0.02:.4f}) | {r['chance_level_trials']} "
           f"(share {r['chance_level_trial_share']}) |\n" if "chance_level_trial_share" in r else "")
        + (f"| choices derived from the data | {r['derived_from_data']} |\n" if r.get("derived_from_data") else "")
        + "".join(f"| enqueued trial {e['number']} ({e.get('source', 'enqueued')}), test accuracy | "
                  f"{e['test_accuracy']:.4f} (val {e['val_accuracy']:.4f}) |\n" for e in r.get("enqueued_trials", []))
        + "".join(f"| with `max_stagnation_trials: {n}` (replayed) | "
                  + (f"stops after {v['stop_minutes']:.0f} min, {v['epochs_by_then']} epochs, best val "
                     f"{v['best_val_accuracy']:.4f}{' (the same best)' if v['same_best_as_full_run'] else ''} |\n"
                     if v["stop_minutes"] is not None else "never stops |\n")
                  for n, v in r.get("stagnation_replay", {}).items())
        + f"\nChampion: `{json.dumps(r['best_params'], sort_keys=True)}`\n"
        + breakdown_markdown(r.get("trial_log", []))
    )


def reregister(args: argparse.Namespace) -> None:
    """``--register``: the same trials, the champion chosen again (for results stored before the
    rule changed); the result's search measurements stay, its champion fields are replaced."""
    quiet()
    config = study_config(args.config)
    name = f"search_{config.study_name}"
    path = RESULTS / f"{name}.json"
    result = json.loads(path.read_text())
    args.goal, args.reference = result.get("goal_test_accuracy"), result.get("reference_accuracy")
    work = work_dir(config.study_name)
    storage, tracking = f"sqlite:///{work}/study.db", f"sqlite:///{work}/mlflow.db"
    started = time.time()
    subprocess.run([sys.executable, "-m", "search", "register", "--config", str(ROOT / args.config),
                    "--storage", storage, "--tracking-uri", tracking], cwd=ROOT, check=True)
    seconds = round(time.time() - started, 1)
    study = optuna.load_study(study_name=config.study_name, storage=storage)
    result.update(champion_fields(study, tracking, config, args), registered_seconds=seconds,
                  registered_again_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    write_json(path, result)  # the search's measurement: keeps its written_at
    (RESULTS / f"{name}.md").write_text(markdown(name, result))
    c = result["champion"]
    print(f"champion: {c['kind']} of trials {c['trials']}, test {result['champion_test_accuracy']:.4f}"
          + (f" (best trial alone {result['best_trial_test_accuracy']:.4f})" if "best_trial_test_accuracy" in result
             else "") + f" -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--budget", type=float, default=7200.0, help="wall-clock seconds for the search")
    parser.add_argument("--reference", type=float, default=None, help="accuracy to beat (optional)")
    parser.add_argument("--goal", type=float, default=None, help="champion test accuracy goal")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel workers on this host (1: one `run` process with every core)")
    parser.add_argument("--markdown-only", action="store_true", help="re-render the .md from the .json")
    parser.add_argument("--resummarize", action="store_true",
                        help="rebuild the per-trial log from the study kept under .cache/bench, then the .md")
    parser.add_argument("--stored", action="store_true",
                        help="measure the study kept under .cache/bench without searching (a run whose "
                             "measurement was cut short); give --budget/--workers/--reference/--goal as it ran")
    parser.add_argument("--note", default=None, help="a sentence stored with the result (what went wrong)")
    parser.add_argument("--register", action="store_true",
                        help="register the champion of the study kept under .cache/bench again, by this code's "
                             "rule (the ensemble by default), score it and update the result (its search unchanged)")
    args = parser.parse_args()
    if args.register:
        reregister(args)
        return
    if args.markdown_only or args.resummarize:
        config = study_config(args.config)
        name = f"search_{config.study_name}"
        path = RESULTS / f"{name}.json"
        result = json.loads(path.read_text())
        if args.resummarize:
            storage = f"sqlite:///{work_dir(config.study_name)}/study.db"
            study = optuna.load_study(study_name=config.study_name, storage=storage)
            result["trial_log"] = trial_log(study)
            result["stagnation_replay"] = stagnation_replay(study)
            if config.data.test_file:
                result["enqueued_trials"] = enqueued_test_accuracy(
                    study, f"sqlite:///{work_dir(config.study_name)}/mlflow.db", config)
            write_json(path, result)  # same measurement, more detail: keeps its written_at
        (RESULTS / f"{name}.md").write_text(markdown(name, result))
        return
    quiet()
    config = study_config(args.config)
    work = work_dir(config.study_name)
    storage, tracking = f"sqlite:///{work}/study.db", f"sqlite:///{work}/mlflow.db"
    cli = [sys.executable, "-m", "search"]
    where = ["--config", str(ROOT / args.config), "--storage", storage, "--tracking-uri", tracking]
    if args.stored:
        measure(args, config, storage, tracking, wall=None, hard_stopped=None, registered_seconds=None,
                exit_codes=None)
        return
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    budget = ["--timeout", str(args.budget), "--n-trials", "100000"]
    if args.workers == 1:
        commands = [[*cli, "run", *where, *budget]]
    else:
        # init creates the study once (concurrent creation races), then N workers share it on
        # one host (SQLite), each with its share of the cores as TensorFlow intra-op threads.
        subprocess.run([*cli, "init", *where], cwd=ROOT, check=True)
        threads = str(max(1, (os.cpu_count() or 1) // args.workers))
        commands = [[*cli, "worker", *where, *budget, "--cpu-threads", threads]] * args.workers
    started = time.time()
    processes = [subprocess.Popen(command, cwd=ROOT) for command in commands]
    hard_stopped = False
    for process in processes:
        try:
            process.wait(timeout=max(1.0, started + args.budget - time.time()))
        except subprocess.TimeoutExpired:
            hard_stopped = True
            process.send_signal(signal.SIGTERM)
            process.wait()
    exit_codes = [p.returncode for p in processes]
    if all(code != 0 for code in exit_codes):
        raise SystemExit(f"search exited with {exit_codes}")
    # A worker that died still leaves its trials in the study: the run is measured and says so.
    wall = time.time() - started
    registered_seconds = None
    if args.workers > 1:  # each worker registered what it saw; the last word covers every trial
        registered = time.time()
        subprocess.run([*cli, "register", *where], cwd=ROOT, check=True)
        registered_seconds = round(time.time() - registered, 1)
    measure(args, config, storage, tracking, wall=wall, hard_stopped=hard_stopped,
            registered_seconds=registered_seconds, exit_codes=exit_codes)


def measure(args: argparse.Namespace, config, storage: str, tracking: str, *,  # type: ignore[no-untyped-def]
            wall: float | None, hard_stopped: bool | None, registered_seconds: float | None,
            exit_codes: list[int] | None) -> None:
    """The result of the search whose study is in ``storage``: written to bench/results. A stored
    study (``--stored``) gives its wall time as first trial start to last trial end, and counts
    as hard-stopped when a trial ended ``interrupted``."""
    study = optuna.load_study(study_name=config.study_name, storage=storage)
    if wall is None:
        ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
        wall = (max(ends) - min(t.datetime_start for t in study.trials if t.datetime_start)).total_seconds()
    if hard_stopped is None:
        hard_stopped = any(t.user_attrs.get("fail_reason") == "interrupted" for t in study.trials)
    finished = [t for t in study.trials if t.state.is_finished()]
    # Every epoch trained counts, also those of a trial stopped by the budget.
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    first_start = min(t.datetime_start for t in study.trials if t.datetime_start)
    passed_at = None
    best_curve = []  # (seconds since start, best validation accuracy so far) per improving trial
    best = 0.0
    for t in sorted(finished, key=lambda t: t.datetime_complete or t.datetime_start):
        if t.value is None or t.datetime_complete is None:
            continue
        seconds = (t.datetime_complete - first_start).total_seconds()
        if passed_at is None and args.reference is not None and t.value > args.reference:
            passed_at = seconds
        if t.value > best:
            best = t.value
            best_curve.append([round(seconds, 1), round(best, 4)])
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in finished):
        raise SystemExit(f"{args.config}: no trial completed within {args.budget:g} s: no champion to score")
    champion = champion_fields(study, tracking, config, args)
    result = {
        "command": " ".join(["python", "bench/search_quality.py", "--config", args.config, "--budget",
                             str(int(args.budget))]
                            + (["--workers", str(args.workers)] if args.workers > 1 else [])
                            + (["--reference", str(args.reference)] if args.reference is not None else [])
                            + (["--goal", str(args.goal)] if args.goal is not None else [])),
        "budget_seconds": args.budget, "budget_minutes": round(args.budget / 60, 1), "workers": args.workers,
        "wall_seconds": round(wall, 1), "hard_stopped": hard_stopped,
        "worker_exit_codes": exit_codes, "note": args.note,
        # The strategy it ran with: the config file may change after the result is stored.
        "strategy": config.model_dump(mode="json", include={"sampler", "pruner"}),
        "goal_test_accuracy": args.goal,
        "best_val_accuracy_over_time": best_curve,
        "best_val_accuracy": study.best_value, "best_params": study.best_params,
        "reference_accuracy": args.reference, **champion, "registered_seconds": registered_seconds,
        **chance_level(study, config),
        "trials": len(study.trials), "finished_trials": len(finished),
        "pruned_trials": sum(t.state == optuna.trial.TrialState.PRUNED for t in finished),
        "epochs_run": epochs, "val_passed_reference_after_seconds": passed_at,
        "trial_log": trial_log(study),
        "stagnation_replay": stagnation_replay(study),
        "enqueued_trials": enqueued_test_accuracy(study, tracking, config) if config.data.test_file else [],
    }
    path = write_result(f"search_{config.study_name}", result, merge=False)
    (RESULTS / f"search_{config.study_name}.md").write_text(
        markdown(f"search_{config.study_name}", json.loads(path.read_text())))
    print(f"best val {study.best_value:.4f}, champion test {champion['champion_test_accuracy']}, "
          f"{len(finished)} trials, {epochs} epochs -> {path}")


if __name__ == "__main__":
    main()
