"""Efficiency champions on the test file (not a test): does an arm's validation lead hold on new data?

    python bench/efficiency_champions.py --seeds 1 2 3 4      # one process per seed list,
    python bench/efficiency_champions.py --seeds 5 6 7 8      # then:
    python bench/efficiency_champions.py --summarize

The efficiency bench ranks arms by the best validation accuracy each found. That split has
1,000 examples (standard error 0.011 per accuracy), and an arm that trains many near-copies of
one model picks the luckiest of them: its best validation score is biased upwards by the
choice itself. Here each (arm, seed)'s champion, its best COMPLETE trial as the registry would
take it, is retrained as that trial ran (the arm's config, the trial's seed, the same epochs,
early stopping and best-epoch weights as search/objective.py) and scored once on the test
file (7.4k examples for Amazon), which no arm saw. The retrained validation accuracy is stored
beside the search's so a retrain that does not reproduce its trial shows.

Resumable: each scored (arm, seed) is kept under .cache/bench/efficiency-champions/; processes
given different seeds share nothing else. A fresh checkout's cache starts from the committed
result's scores. Reads bench/results/efficiency.json (the runs and
their trial order), writes bench/results/efficiency_champions.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from common import RESULTS, ROOT, accuracy, fit_like_trial, quiet, write_result
from efficiency import ARMS, EXTRA_ARMS, MIN_SEEDS, RECOMMENDED, arm_dir, arm_overrides, paired_stats

NAME = "efficiency_champions"  # bench/results/NAME.json and .md
WORK = ROOT / ".cache" / "bench" / "efficiency-champions"
UNPRUNED = ("random", "notebook_grid")


def champion_number(run: dict[str, Any]) -> int:
    """Trial number of the run's best complete trial (``best_params``; trials are stored in order).
    Should a sampler propose the very same params twice, the first such trial is taken (its seed,
    hence its model, can differ from the best one's; the retrained validation accuracy shows it)."""
    return run["trial_params"].index(run["best_params"])


def row_path(arm: str, seed: int) -> Any:
    return WORK / f"{arm}-seed{seed}.json"


def store_row(row: dict[str, Any]) -> None:
    row_path(row["arm"], row["seed"]).write_text(json.dumps(row, indent=1))


def restore_committed_rows() -> None:
    """Put the committed result's scores back in the cache where it has none: the cache is not
    committed, and the summary is built from it alone, so on a fresh checkout scoring a few
    (arm, seed)s would otherwise rewrite the result with only those. ``is_current`` still
    re-scores (or ``--summarize`` refuses) a restored score whose champion changed."""
    committed = RESULTS / f"{NAME}.json"
    if not committed.exists():
        return
    for row in json.loads(committed.read_text()).get("rows", []):
        if not row_path(row["arm"], row["seed"]).exists():
            store_row(row)


def is_current(path: Any, run: dict[str, Any] | None) -> bool:
    """Whether the stored score at ``path`` is of ``run``'s champion (a re-run arm has another)."""
    if run is None or not path.exists() or run["best_params"] is None:
        return False
    row = json.loads(path.read_text())
    return bool(row["params"] == run["best_params"] and row["trial"] == champion_number(run))


def trial_value(run: dict[str, Any], number: int) -> float | None:
    """The champion trial's validation accuracy in the search, where its study is still on disk
    (efficiency.json keeps each arm's best-so-far curve, which may end on a pruned trial)."""
    import optuna

    path = arm_dir(run["arm"], run["seed"]) / "study.db"
    if not path.exists():
        return None
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{path}")
    trial = study.trials[number]
    return None if trial.params != run["best_params"] else round(float(trial.value), 4)


def score(run: dict[str, Any], config_path: str, max_epochs: int) -> dict[str, Any]:
    from models.params import ModelParams
    from search.config import load_config
    from search.objective import MONITOR, TrialTraining

    config = load_config(ROOT / config_path,
                         overrides=arm_overrides(run["arm"], run["seed"], max_epochs)).with_weight_source()
    config = config.model_copy(update={"data": config.data.resolved(ROOT)})
    number = champion_number(run)
    # The trial's own data, training rows, seed and model, as search/objective.py sets them up.
    setup = TrialTraining.create(config, ModelParams.from_dict(dict(run["best_params"])), number)
    started = time.perf_counter()
    history, probabilities = fit_like_trial(setup)
    test = accuracy(probabilities, setup.data.y_test)
    return {"arm": run["arm"], "seed": run["seed"], "trial": number, "params": run["best_params"],
            "arm_best_val_accuracy": run["best_val_accuracy"], "search_val_accuracy": trial_value(run, number),
            "retrained_val_accuracy": round(max(history[MONITOR]), 4),
            "test_accuracy": round(test, 4), "n_test": int(len(setup.data.y_test)),
            "seconds": round(time.perf_counter() - started, 1)}


def summarize(rows: list[dict[str, Any]], arms: list[str]) -> dict[str, Any]:
    by = {(r["arm"], r["seed"]): r for r in rows}
    seeds = sorted({s for (_, s) in by if all((a, s) in by for a in arms)})
    if len(seeds) < 2:
        raise SystemExit(f"arms {', '.join(arms)}: fewer than two seeds scored for all of them")
    out: dict[str, Any] = {"seeds": seeds, "arms": {}}
    for arm in arms:
        tests = [by[arm, s]["test_accuracy"] for s in seeds]
        vals = [by[arm, s]["retrained_val_accuracy"] for s in seeds]
        entry = {"test_mean": round(statistics.mean(tests), 4), "test_sd": round(statistics.stdev(tests), 4),
                 "val_mean": round(statistics.mean(vals), 4)}
        if arm != RECOMMENDED:
            entry["recommended_minus_arm"] = paired_stats(
                [by[RECOMMENDED, s]["test_accuracy"] - by[arm, s]["test_accuracy"] for s in seeds])
        out["arms"][arm] = entry
    return out


def full_arms(rows: list[dict[str, Any]], arms: list[str]) -> list[str]:
    """The default arms and each extra arm scored on every seed they were (as efficiency.md's
    first table: an extra arm run on all the default seeds is compared on all of them)."""
    scored = {(r["arm"], r["seed"]) for r in rows}
    seeds = {s for (_, s) in scored if all((a, s) in scored for a in ARMS)}
    return [a for a in arms if a in ARMS or all((a, s) in scored for s in seeds)]


def summary_table(s: dict[str, Any]) -> list[str]:
    lines = ["| arm | test, mean ± sd | validation, mean | recommended − arm on test, paired (seeds won) |",
             "|---|---|---|---|"]
    # In the bench's arm order (the stored JSON has its keys sorted).
    for arm, e in sorted(s["arms"].items(), key=lambda item: (ARMS + EXTRA_ARMS).index(item[0])):
        d = e.get("recommended_minus_arm")
        paired = (f"{d['mean_difference']:+.4f} ± {d['standard_error']:.4f} "
                  f"({d['recommended_wins']}/{len(s['seeds'])})" if d else "—")
        name = f"**{arm}** (recommended)" if arm == RECOMMENDED else arm
        lines.append(f"| {name} | {e['test_mean']:.4f} ± {e['test_sd']:.4f} | {e['val_mean']:.4f} | {paired} |")
    return lines


def markdown(result: dict[str, Any], per_run: bool = True) -> str:
    """efficiency_champions.md; without ``per_run`` (README Results) it ends before the table of
    every (arm, seed) and points at the file instead."""
    s = result["summary"]
    lines = [f"# Efficiency champions on the test file, seeds {', '.join(map(str, s['seeds']))}", "",
             f"`{result['command']}`", "",
             "Each (arm, seed)'s best complete trial of the efficiency bench, retrained as it ran and scored "
             f"once on the test file ({result['n_test']} examples, standard error about "
             f"{result['test_se']:.4f} per accuracy). Validation = the same retrain on the 1,000-example split.", "",
             *summary_table(s)]
    extra = result.get("extra_arms")
    if extra:
        lines += ["", f"With the extra arms, on the seeds they were measured on "
                  f"({', '.join(map(str, extra['seeds']))}):", "", *summary_table(extra)]
    lines += ["", f"Retrains whose validation accuracy differs from their trial's in the search by more than "
              f"0.005: {result['not_reproduced']} of the {result['checked']} whose trial value is known "
              "(search val: from the arm's study where it is still on disk; for the unpruned arms, random and "
              "the grid, the arm's best, as all their trials complete; the pruned arms' best may be a pruned "
              "trial's).", ""]
    if not per_run:
        return "\n".join(lines + ["Per (arm, seed): `bench/results/efficiency_champions.md`."]) + "\n"
    lines += ["| arm | seed | trial | arm's best val | search val | retrained val | test |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: (r["arm"], r["seed"])):
        lines.append(f"| {r['arm']} | {r['seed']} | {r['trial']} | {r['arm_best_val_accuracy']} | "
                     f"{r['search_val_accuracy'] if r['search_val_accuracy'] is not None else '—'} | "
                     f"{r['retrained_val_accuracy']} | {r['test_accuracy']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[])
    parser.add_argument("--arms", nargs="+", choices=ARMS + EXTRA_ARMS,
                        help="default: every arm with runs in efficiency.json")
    parser.add_argument("--summarize", action="store_true", help="only rewrite the JSON and markdown")
    parser.add_argument("--cpu-threads", type=int, default=1)
    args = parser.parse_args()
    quiet()
    stored = json.loads((RESULTS / "efficiency.json").read_text())
    runs = {(r["arm"], r["seed"]): r for r in stored["runs"]}
    # --arms picks what to score; the summary covers the arms efficiency.md compares: the default
    # ones and each extra arm stored on at least MIN_SEEDS seeds (as efficiency.extra_arm_seeds).
    stored_arms = [a for a in ARMS + EXTRA_ARMS
                   if a in ARMS or sum(arm == a for arm, _ in runs) >= MIN_SEEDS]
    args.arms = args.arms or stored_arms
    WORK.mkdir(parents=True, exist_ok=True)
    restore_committed_rows()
    if not args.summarize:
        from models.runtime import configure_accelerator

        configure_accelerator(cpu_threads=args.cpu_threads)
        for seed in args.seeds:
            for arm in args.arms:
                run = runs.get((arm, seed))
                if run is None or run["best_params"] is None or is_current(row_path(arm, seed), run):
                    continue
                row = score(run, stored["config"], stored["max_epochs"])
                store_row(row)
                print(f"{arm} seed {seed}: trial {row['trial']} val {row['search_val_accuracy']} -> "
                      f"{row['retrained_val_accuracy']}, test {row['test_accuracy']} ({row['seconds']} s)", flush=True)
    rows = [json.loads(p.read_text()) for p in sorted(WORK.glob("*-seed*.json"))]
    rows = [r for r in rows if r["arm"] in stored_arms]
    outdated = [f"{r['arm']} seed {r['seed']}" for r in rows
                if not is_current(row_path(r["arm"], r["seed"]), runs.get((r["arm"], r["seed"])))]
    if outdated:
        raise SystemExit(f"{WORK}: scored champions no longer in efficiency.json ({', '.join(outdated)}); "
                         "score them again with --seeds")
    for r in rows:
        if r["search_val_accuracy"] is None and r["arm"] in UNPRUNED:
            # Every trial of an unpruned arm is complete: its best-so-far is the champion's value.
            r["search_val_accuracy"] = r["arm_best_val_accuracy"]
    if len({r["seed"] for r in rows}) < 2:
        print(f"{len(rows)} scored; a summary needs two seeds", flush=True)
        return
    n_test = rows[0]["n_test"]
    p = statistics.mean(r["test_accuracy"] for r in rows)
    result = {"command": "python bench/efficiency_champions.py --seeds ... && python bench/efficiency_champions.py "
                         "--summarize", "config": stored["config"], "n_test": n_test,
              "test_se": round((p * (1 - p) / n_test) ** 0.5, 4),
              "checked": sum(r["search_val_accuracy"] is not None for r in rows),
              "not_reproduced": sum(abs(r["retrained_val_accuracy"] - r["search_val_accuracy"]) > 0.005
                                    for r in rows if r["search_val_accuracy"] is not None),
              "rows": rows, "summary": summarize(rows, full_arms(rows, stored_arms))}
    present = [a for a in stored_arms if any(r["arm"] == a for r in rows)]
    if any(a in EXTRA_ARMS for a in present):
        result["extra_arms"] = summarize(rows, present)
    write_result(NAME, result, merge=False)
    (RESULTS / f"{NAME}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
