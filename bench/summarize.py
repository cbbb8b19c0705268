"""Render bench/results/*.json into the README's Results section (between the markers)."""

from __future__ import annotations

import json
import re

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
    path = RESULTS / "throughput.json"
    if not path.exists():
        return "_`python bench/throughput.py` has not been run yet._\n"
    data = json.loads(path.read_text())
    size = data["size"]
    rows = "\n".join(f"| {name} | {value:.0f} |" for name, value in data["examples_per_second"].items())
    arms = "\n".join(f"| {name} | {arm['examples_per_second']:.0f} | {arm['best_val_accuracy']:.4f} |"
                     for name, arm in data["padding_masking"].items())
    return (
        f"\nThroughput (`{data['command']}`, {data['backend']} backend, {data['device']}; {data['data']}, "
        f"embedding {size['embedding_dim']}, units {size['units']}, length {size['sequence_length']}, "
        f"batch {size['batch_size']}):\n\n| model | training examples/s |\n|---|---|\n{rows}\n\n"
        f"Padding and masking, BiGRU, {data['epochs_per_arm']} epochs, same split and seed:\n\n"
        f"| arm | examples/s | best val_accuracy |\n|---|---|---|\n{arms}\n"
    )


def search_section() -> str:
    parts = []
    for name in ("search_imdb", "search_amazon"):
        path = RESULTS / f"{name}.md"
        if path.exists():
            parts.append("\n" + path.read_text().replace("# Search quality: ", "Search quality, ", 1))
        else:
            parts.append(f"\n_`{name}` has not been run yet (`make bench-search`)._\n")
    return "".join(parts)


def efficiency_section() -> str:
    path = RESULTS / "efficiency.md"
    if not path.exists():
        return "\n_`make bench-efficiency` has not been run yet._\n"
    body = path.read_text().replace("# Efficiency: ", "Efficiency, ", 1)
    return f"\n{body}\nFigure: `bench/results/efficiency.html` (best validation accuracy vs cumulative epochs).\n"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def headline() -> str:
    """Goals met or missed, in words, from the result files."""
    lines = []
    for name, label in (("search_imdb", "IMDB"), ("search_amazon", "Amazon")):
        r = _load(name)
        if r is None:
            lines.append(f"- **{label}: not run.**")
            continue
        verdict = "met" if r["goal_met"] else "missed"
        lines.append(
            f"- **{label} goal {verdict}**: champion test accuracy {r['champion_test_accuracy']:.4f} "
            f"(goal {r['goal_test_accuracy']}, notebooks {r['reference_accuracy']}) after a "
            f"{r['budget_seconds'] / 60:.0f}-minute budget on {r['machine']['cpus']} CPU cores "
            f"({r['finished_trials']} finished trials, {r['epochs_run']} epochs); best validation "
            f"accuracy {r['best_val_accuracy']:.4f}.")
    e = _load("efficiency")
    if e and "summary" in e:
        s = e["summary"]
        best = s["mean_best_val_accuracy"]
        seeds = ", ".join(map(str, e["seeds"]))
        if not s["goal_met"]:
            verdict = "missed"
        elif s["goal_met_only_through_shared_trials"]:
            verdict = ("met on paper only: on some seed random's best came from a startup trial both arms share "
                       "(same seed), so the ratio does not show TPE finding better models faster")
        else:
            verdict = "met"
        lines.append(
            f"- **Efficiency**: `epochs_ratio_vs_random` {s['epochs_ratio_vs_random']} (goal <= "
            f"{s['goal_epochs_ratio']}, worst seed): {verdict}. Best validation accuracy after "
            f"{e['epoch_budget']} epochs (mean over seeds {seeds}): TPE+pruning {best.get('tpe_pruning')}, "
            f"random {best.get('random')}, the notebooks' grid {best.get('notebook_grid')}.")
    gpu = _load("throughput_gpu")
    lines.append(f"- **GPU**: {gpu['device']} measured, see `throughput_gpu.json`." if gpu else
                 "- **GPU: not measured** (no accelerator was lent to the sessions that ran these).")
    return "\n".join(lines) + "\n\n"


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    body = (headline() + core_section() + "\n" + storage_section() + throughput_section() + search_section()
            + efficiency_section())
    section = f"{START}\n{body}{END}"
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    readme.write_text(text)
    print("README Results section updated")


if __name__ == "__main__":
    main()
