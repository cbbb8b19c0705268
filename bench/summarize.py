"""Render bench/results/*.json into the README's Results section (between the markers)."""

from __future__ import annotations

import json
import re
import statistics

from common import RESULTS, ROOT

START, END = "<!-- results:start -->", "<!-- results:end -->"


def core_section() -> str:
    path = RESULTS / "core.json"
    if not path.exists():
        return "_`make bench-core` has not been run yet._\n"
    data = json.loads(path.read_text())
    core, m = data["core"], data["machine"]
    prep, med = core["data_prep"], core["epoch_seconds_median"]
    return (
        f"Core (`{core['command']}`, {m['cpus']} CPUs, {data['written_at']}; fixed BiGRU(32) on {core['data']}):\n\n"
        "| measure | value |\n|---|---|\n"
        f"| data prep, cold | {prep['cold_seconds']:.2f} s |\n"
        f"| data prep, cached | {prep['cached_seconds'] * 1000:.1f} ms ({prep['speedup']:.0f}x faster) |\n"
        f"| epoch, bare `model.fit` (median) | {med['bare_fit']:.2f} s |\n"
        f"| epoch, trial without tracking | {med['trial_untracked']:.2f} s |\n"
        f"| epoch, trial with MLflow | {med['trial_tracked']:.2f} s |\n"
        f"| trial / bare fit | {core['trial_vs_bare_fit_ratio']:.3f} |\n"
        f"| tracking overhead (with / without MLflow) | {core['tracking_overhead_ratio']:.3f} |\n"
    )


def storage_section() -> str:
    path = RESULTS / "storage.md"
    if not path.exists():
        return "_`make bench-storage` has not been run yet._\n"
    body = path.read_text().split("\n", 1)[1]
    return "Storage throughput, trivial objective:\n" + body


def throughput_section() -> str:
    data = _load("throughput")
    if data is None or "datasets" not in data:
        return "\n_`make bench-throughput` (v2) has not been run yet._\n"
    size = data["size"]
    def dataset_row(name: str, d: dict) -> str:
        per_seed = ", ".join(map(str, d["speedup_per_seed"]))
        return (f"| {name} | {d['sequence_length']} | {d['mean_tokens']} | {d['plain_examples_per_second']:.0f} | "
                f"{d['project_examples_per_second']:.0f} | **{d['speedup_vs_plain_fit']}** ({per_seed}) | "
                f"{d['plain_val_accuracy_mean']:.4f} | {d['project_val_accuracy_mean']:.4f} | "
                f"{d['val_accuracy_delta']:+.4f} |")

    def runtime_row(arm: str, r: dict) -> str:
        if "examples_per_second" not in r:
            return f"| {arm} | {r.get('skipped') or 'error'} | | | |"
        med = statistics.median
        return (f"| {arm} | {med(r['examples_per_second']):.0f} | {r.get('ratio_vs_tensorflow_default', '')} | "
                f"{med(r['first_epoch_s']):.1f} | {med(r['best_val_accuracy']):.4f} |")

    rows = "\n".join(dataset_row(name, d) for name, d in data["datasets"].items())
    runtime = "\n".join(runtime_row(arm, r) for arm, r in data.get("runtime", {}).items())
    cold = data.get("cold_start", {})
    goals = "\n".join(f"- `{k}`: {'met' if v else 'missed'}" for k, v in data.get("goals", {}).items())
    return (
        f"\nThroughput v2 (`{data['command']}`, {data['backend']} backend, {data['device']}; BiGRU({size['units']}), "
        f"embedding {size['embedding_dim']}, vocabulary {size['max_features']}, batch {size['batch_size']}, mask on; "
        f"seeds {data['seeds']}, {data['epochs_per_arm']} epochs per arm; speed over epochs 2+):\n\n"
        "| data | length | mean tokens | plain fit ex/s | trial path ex/s | speedup (per seed) | plain val | "
        "trial val | val delta |\n|---|---|---|---|---|---|---|---|---|\n" + rows + "\n\n"
        "Runtime arms (fresh process each, amazon, trial path, 2 epochs):\n\n"
        "| arm | ex/s | vs TF default | first epoch s | val |\n|---|---|---|---|---|\n" + runtime + "\n\n"
        + (f"Cold start: `predict` on a bundle (one text) {statistics.median(cold['seconds']['predict']):.2f} s vs "
           f"`python -c \"import keras\"` {statistics.median(cold['seconds']['import_keras']):.2f} s (medians of "
           f"{len(cold['seconds']['predict'])}): ratio **{cold['predict_cold_start_ratio']}**.\n\n" if cold else "")
        + goals + "\n"
    )


def compose_section() -> str:
    data = _load("compose")
    if data is None:
        return "\n_`make compose-check` has not been run yet._\n"
    checks = "\n".join(f"| {name} | {'pass' if c['ok'] else 'FAIL'} | {c['detail']} |"
                        for name, c in data["checks"].items())
    timings = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v} s" for k, v in data["timings_s"].items())
    return (f"\nContainer stack (`{data['command']}`, {data['workers']} workers, target {data['target']} then "
            f"{data['resumed_target']}; engine {data['engine']['docker']}, Compose {data['engine']['compose']}, "
            f"{data['engine']['images']}; engine started by the check: {data['started_engine']}): "
            f"**{'passed' if data['passed'] else 'FAILED'}**. Timings: {timings}.\n\n"
            "| check | result | detail |\n|---|---|---|\n" + checks.replace("\t", " ") + "\n")


def serving_section() -> str:
    parts = []
    for name in ("serving", "serving_ensemble"):
        data = _load(name)
        if data is None:
            if name == "serving":
                parts.append("\n_`make bench-serving` has not been run yet._\n")
            continue
        q = data["single_request_ms"]
        members = data.get("members", 1)
        what = f"an ensemble of {members} models" if members > 1 else "one model"
        parts.append(
            f"\nServing (`{data['command']}`; {data['server']}, {data['model']}, {what}): `predict` and the served "
            f"model agree on {data['agreement_texts']} texts (labels {data['labels_equal']}, probabilities to 4 "
            f"decimals {data['probabilities_equal_4dp']}); single-text request p50 **{q['p50']} ms**, p90 "
            f"{q['p90']} ms, p99 {q['p99']} ms over {data['requests']} requests; one request of 256 texts "
            f"{data['batch_256_request_ms']} ms; server start {data['startup_s']} s.\n")
    return "".join(parts)


def workers_section() -> str:
    data = _load("workers")
    if data is None:
        return "\n_`make bench-workers` has not been run yet._\n"
    rows = "\n".join(f"| {r['repeat']} | {r['arm']} | {r['workers']} | {r['wall_seconds']} | "
                     + ", ".join(f"{k} {v:.3f}" for k, v in r["val_accuracy"].items()) + " |" for r in data["runs"])
    return (f"\nWorkers per host (`{data['command']}`, {data['cpus']} CPUs; the same {len(data['trials'])} enqueued "
            f"trials, {data['epochs_per_trial']} epochs each): one worker per core with one intra-op thread each "
            f"finishes them **{data['speedup']}x** as fast as one worker with every core (per repeat "
            f"{data['speedup_per_repeat']}).\n\n| repeat | arm | workers | wall s | val accuracy per trial |\n"
            "|---|---|---|---|---|\n" + rows + "\n")


def search_section() -> str:
    parts = []
    for name in ("search_imdb", "search_amazon", "search_amazon_transfer", "search_defaults_short",
                 "search_defaults_reuters"):
        path = RESULTS / f"{name}.md"
        target = "bench-defaults" if "defaults" in name else "bench-search-transfer" if "transfer" in name \
            else "bench-search"
        if path.exists():
            parts.append("\n" + path.read_text().replace("# Search quality: ", "Search quality, ", 1))
        else:
            parts.append(f"\n_`{name}` has not been run yet (`make {target}`)._\n")
    return "".join(parts)


def efficiency_section() -> str:
    path = RESULTS / "efficiency.md"
    if not path.exists():
        return "\n_`make bench-efficiency` has not been run yet._\n"
    body = path.read_text().replace("# Efficiency: ", "Efficiency, ", 1)
    champions = _load("efficiency_champions")
    tail = ""
    if champions:
        from efficiency_champions import markdown as champions_markdown

        # Without the per-(arm, seed) rows: they stay in efficiency_champions.md.
        tail = "\n" + champions_markdown(champions, per_run=False).replace("# Efficiency champions",
                                                                           "Efficiency champions", 1)
    return (f"\n{body}\nFigure: `bench/results/efficiency.html` (best validation accuracy so far vs cumulative "
            f"epochs and vs wall seconds, mean ± sd over seeds).\n{tail}")


def fidelity_section() -> str:
    data = _load("fidelity")
    if not data:
        return "\n_`make bench-fidelity` has not been run yet._\n"
    parts = ["\nEarly rungs: epochs vs a fraction of the training set (`make bench-fidelity`). The same random "
             "configurations trained on all data and on a quarter / half of it; how well each cheap measurement "
             "ranks them by the target, and what keeping its top third would lose:\n"]
    for config, r in data["results"].items():
        rows = "\n".join(f"| {name} | {m['cost_epochs']:.2f} | {m['spearman']:+.3f} | {m['regret_top_third']:.4f} |"
                         for name, m in sorted(r["measures"].items(), key=lambda kv: kv[1]["cost_epochs"]))
        parts.append(f"\n{config}, {r['configurations']} configurations, target: {r['target']} (best "
                     f"{r['target_best']:.4f}, median {r['target_median']:.4f}); `{r['command']}`\n\n"
                     "| early measurement | cost (full-data epochs) | Spearman vs target | regret of its top third |\n"
                     f"|---|---|---|---|\n{rows}\n")
    return "".join(parts)


def transfer_section() -> str:
    data = _load("weight_transfer")
    if not data:
        return "\n_`make bench-transfer` has not been run yet._\n"
    src, tgt, d = data["source"], data["target"], data["transfer_minus_scratch"]
    rows = "\n".join(f"| {arm} | {a['test_mean']:.4f} ± {a['test_sd']:.4f} | {a['val_mean']:.4f} | "
                     f"{a['ensemble_test_accuracy']:.4f} |" for arm, a in data["arms"].items())
    return ("\nWeights from a related data set (`make bench-transfer`; `warm_start.weights` does this in a "
            f"study): the "
            f"baseline configuration trained on {src['config']} for {src['epochs']} epochs ({src['seconds']:.0f} s), "
            f"its weights as the start of the same configuration on {tgt['config']} (embedding rows by word), "
            f"against Keras' initial weights; seeds {', '.join(map(str, data['seeds']))}, test file "
            f"({tgt['n_test']} texts). Transfer minus scratch, paired: {d['mean']:+.4f} ± {d['standard_error']:.4f} "
            f"(transfer wins {d['transfer_wins']} of {len(data['seeds'])}); `{data['command']}`\n\n"
            "| start | test, mean ± sd | validation, mean | ensemble of the seeds' models, test |\n"
            f"|---|---|---|---|\n{rows}\n" + source_variants_table(data) + learning_curve_table())


def source_variants_table(main: dict) -> str:
    """Other sources for the same transfer (bench/results/weight_transfer_source_*.json, written with
    --source-params / --source-epochs / --result), against the main source on the same seeds."""
    variants = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("weight_transfer_source_*.json"))]
    if not variants:
        return ""
    by_seed = {r["seed"]: r["test_accuracy"] for r in main["rows"] if r["arm"] == "transfer"}

    def row(d: dict, name: str) -> str:
        src = d["source"]
        tests = [r["test_accuracy"] for r in d["rows"] if r["arm"] == "transfer"]
        seeds = [r["seed"] for r in d["rows"] if r["arm"] == "transfer"]
        main_mean = sum(by_seed[s] for s in seeds) / len(seeds)
        return (f"| {name} | {src['params']['max_features']} | {src['params']['sequence_length']} | {src['epochs']} | "
                f"{src['val_accuracy'][-1]:.4f} | {src['seconds']:.0f} | {sum(tests) / len(tests):.4f} | "
                f"{main_mean:.4f} | {', '.join(map(str, seeds))} |")

    rows = "\n".join(row(d, f"`{d['command'].split('--result ')[-1]}`") for d in variants)
    return ("\nOther sources, same target and baseline, transfer arm only, against the source above on the same "
            "seeds (the source keeps its last epoch's weights; its seconds depend on the shared machine's load):\n\n"
            "| source | vocabulary | sequence length | epochs | its last validation on IMDB | seconds | "
            "Amazon test, mean | the source above, same seeds | seeds |\n|---|---|---|---|---|---|---|---|---|\n"
            f"{row(main, '`weight_transfer` (above)')}\n{rows}\n")


def learning_curve_table() -> str:
    data = _load("learning_curve")
    if not data:
        return ""
    sizes = list(data["curve"]["scratch"]["test_mean_by_train_examples"])
    rows = "\n".join(f"| {arm} | " + " | ".join(f"{c['test_mean_by_train_examples'][n]:.4f}" for n in sizes)
                     + f" | {c['slope_per_doubling']:+.4f} |" for arm, c in data["curve"].items())
    return (f"\nLearning curve (`make bench-learning-curve`): the baseline configuration on N of the training "
            f"rows of {data['target']} (a fixed random subset per N, as `training.max_train_examples` draws it), "
            f"test accuracy, mean of seeds {', '.join(map(str, data['seeds']))}, from "
            f"Keras' initial weights and from `{data['source']}`; `{data['command']}`\n\n"
            f"| start | {' | '.join(f'N = {n}' for n in sizes)} | gain per doubling of N |\n"
            f"|---|{'---|' * len(sizes)}---|\n{rows}\n")


def stagnation_sentence(replay: dict) -> str:
    """The replayed stop of the largest ``max_stagnation_trials`` the search bench tried."""
    if not replay:
        return ""
    n = max(replay, key=int)
    v = replay[n]
    if v["stop_minutes"] is None:
        return f" With `max_stagnation_trials: {n}` it would not have stopped early."
    same = "the same best trial" if v["same_best_as_full_run"] else f"best validation {v['best_val_accuracy']:.4f}"
    return f" With `max_stagnation_trials: {n}` (replayed) it stops after {v['stop_minutes']:.0f} min with {same}."


def linear_sentence(study: str) -> str:
    """The linear reference on the same split (bench/linear_reference.py), where measured."""
    r = (_load("linear_reference") or {}).get("results", {}).get(f"studies/{study}.yaml")
    if r is None:
        return ""
    return (f" A tuned TF-IDF unigram+bigram logistic regression on the same split (`make bench-linear`): "
            f"test {r['test_accuracy']:.4f}.")


def weights_sentence(e: dict) -> str:
    """The efficiency verdicts of the strategy started from a source model (warm_start.weights),
    free and charged: from the main table when it ran on every seed, else from the extra arms'."""
    ran = [(e["seeds"], e["summary"])] + ([(e["extra_arms"]["seeds"], e["extra_arms"]["summary"])]
                                          if e.get("extra_arms") else [])
    found = [(seeds, s) for seeds, s in ran if "tpe_sh_weights" in s["best_val_accuracy_at"]["100"]]
    if not found:
        return ""
    seeds, s = found[0]
    at, ratios = s["best_val_accuracy_at"], s["epochs_ratio_vs_random_by_arm"]

    def verdict(arm: str) -> str:
        grid = "/".join("yes" if at[p][arm]["mean"] >= at[p]["notebook_grid"]["mean"] else "no"
                        for p in ("25", "50", "100"))
        return f"at or above the grid {grid}, `epochs_ratio_vs_random_mean` {ratios[arm]['mean']}"

    charged = (f"; with the source's training charged to the budget: {verdict('tpe_sh_weights_charged')}"
               if "tpe_sh_weights_charged" in ratios else "")
    return (f" Started from an IMDB model (`warm_start.weights`, arm tpe_sh_weights, seeds "
            f"{', '.join(map(str, seeds))}; an option, not the default): {verdict('tpe_sh_weights')}"
            f"{charged}.")


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def headline() -> str:
    """Goals met or missed, in words, from the result files."""
    lines = []
    for name, label in (("search_imdb", "IMDB"), ("search_amazon", "Amazon"),
                        ("search_amazon_transfer", "Amazon from IMDB weights")):
        r = _load(name)
        if r is None:
            lines.append(f"- **{label}: not run.**")
            continue
        verdict = "met" if r["goal_met"] else "missed"
        lines.append(
            f"- **{label} goal {verdict}**: champion test accuracy {r['champion_test_accuracy']:.4f} "
            + (f"(ensemble of {len(r['champion']['trials'])} trials; the best trial alone "
               f"{r['best_trial_test_accuracy']:.4f}) " if "best_trial_test_accuracy" in r else "")
            + f"(goal {r['goal_test_accuracy']}, notebooks {r['reference_accuracy']}) after a "
            f"{r['budget_seconds'] / 60:.0f}-minute budget on {r['machine']['cpus']} CPU cores "
            f"({r['finished_trials']} finished trials, {r['epochs_run']} epochs); best validation "
            f"accuracy {r['best_val_accuracy']:.4f}."
            + (f" Note: {r['note']}." if r.get("note") else "")
            + "".join(f" Enqueued trial {e['number']} ({e.get('source', 'enqueued')}), trained on the same data: test "
                      f"{e['test_accuracy']:.4f}." for e in r.get("enqueued_trials", []))
            + stagnation_sentence(r.get("stagnation_replay", {}))
            + linear_sentence(name.removeprefix("search_")))
    e = _load("efficiency")
    if e and "summary" in e and e.get("version") == 2:
        s = e["summary"]
        at = s["best_val_accuracy_at"]
        seeds = ", ".join(map(str, e["seeds"]))
        ratio_ok = "met" if s["epochs_ratio_vs_random_mean"] <= s["goal_epochs_ratio_mean"] else "missed"

        def flags(d: dict) -> str:
            return "/".join("yes" if d[p] else "no" for p in ("25", "50", "100"))

        lines.append(
            f"- **Efficiency** ({e['config']}, {e['epoch_budget']} epochs per arm, seeds {seeds} of "
            f"{len(e['seeds_planned'])} planned): `epochs_ratio_vs_random_mean` {s['epochs_ratio_vs_random_mean']} "
            f"(goal <= {s['goal_epochs_ratio_mean']}: {ratio_ok}); recommended strategy ({s['recommended_arm']}) "
            f"at or above the grid at 25/50/100 % of the budget: {flags(s['beats_grid_at'])}, above random: "
            f"{flags(s['beats_random_at'])}. Best validation accuracy at 100 %: "
            + ", ".join(f"{arm} {v['mean']:.4f}" for arm, v in at["100"].items()) + "."
            + weights_sentence(e))
    t = _load("throughput")
    if t and "goals" in t:
        speed = ", ".join(f"{name} {d['speedup_vs_plain_fit']}x" for name, d in t["datasets"].items())
        deltas = ", ".join(f"{name} {d['val_accuracy_delta']:+.4f}" for name, d in t["datasets"].items())
        missed = [k for k, ok in t["goals"].items() if not ok]
        lines.append(f"- **Trial speed** (length-bucketed batches vs plain padded `fit`, 3 seeds): {speed}; "
                     f"validation accuracy delta {deltas}; `predict` cold start / `import keras` "
                     f"{t['predict_cold_start_ratio']}. Goals missed: {', '.join(missed) or 'none'}.")
    c = _load("compose")
    if c:
        lines.append(f"- **Container stack** (`make compose-check`, {c['workers']} workers): "
                     f"{'passed' if c['passed'] else 'FAILED'}, {sum(x['ok'] for x in c['checks'].values())}/"
                     f"{len(c['checks'])} checks, {c['timings_s']['total_s'] / 60:.1f} min end to end "
                     f"(engine started by the check: {c['started_engine']}).")
    s = _load("serving")
    if s:
        lines.append(f"- **Serving**: the champion behind `mlflow models serve` agrees with `predict` on "
                     f"{s['agreement_texts']} texts ({s['labels_equal'] and s['probabilities_equal_4dp']}); "
                     f"single-request p50 {s['single_request_ms']['p50']} ms.")
    gpu = _load("throughput_gpu")
    lines.append(f"- **GPU**: {gpu['device']} measured, see `throughput_gpu.json`." if gpu else
                 "- **GPU: not measured** (no accelerator was lent to the sessions that ran these).")
    return "\n".join(lines) + "\n\n"


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    body = (headline() + core_section() + "\n" + storage_section() + throughput_section() + compose_section()
            + serving_section() + workers_section() + search_section() + efficiency_section() + fidelity_section()
            + transfer_section())
    section = f"{START}\n{body}{END}"
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    readme.write_text(text)
    print("README Results section updated")


if __name__ == "__main__":
    main()
