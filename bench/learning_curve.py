"""Learning curve benchmark (not a test): how test accuracy grows with the training rows, from
Keras' initial weights and from a transferred source.

    python bench/learning_curve.py --target studies/amazon.yaml --sizes 1000 2000 4000 --seeds 1 2 3

The baseline trial's configuration (search/warm_start.py) on the target's data, trained as a trial
is (bench/common.py fit_like_trial: the target's max_epochs and patience, best epoch kept), on the
N of the training rows (``training.max_train_examples``: the same random subset for every seed,
as a study's trials draw it) with the validation split unchanged; twice per (N, seed):

  scratch   Keras' initial weights
  transfer  the weights of --source (a bundle, `make source-imdb`), as `warm_start.weights` does

Each model is scored once on the target's test file. The Amazon set here has 5,000 training lines
(4,000 after the validation split), a fifth of the notebooks' 25,000, whose best model is the
0.886 reference: the slope per doubling says what the smaller set costs.
Writes bench/results/learning_curve.json.
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any

from common import ROOT, machine, quiet, versions, write_result
from weight_transfer import baseline_training, fit_and_score


def slope_per_doubling(sizes: list[int], means: list[float]) -> float:
    """Least-squares slope of mean test accuracy against log2(training rows)."""
    xs = [math.log2(n) for n in sizes]
    mx, my = statistics.mean(xs), statistics.mean(means)
    return sum((x - mx) * (y - my) for x, y in zip(xs, means, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="studies/amazon.yaml")
    parser.add_argument("--source", default=".cache/sources/imdb-baseline", help="bundle (make source-imdb)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cpu-threads", type=int, default=None)
    args = parser.parse_args()
    quiet()
    from models.runtime import configure_accelerator
    from models.transfer import load_source, transfer_weights

    configure_accelerator(cpu_threads=args.cpu_threads)
    source = load_source(str(ROOT / args.source))
    rows: list[dict[str, Any]] = []
    for size in sorted(args.sizes):
        for seed in args.seeds:
            for arm in ("scratch", "transfer"):
                setup = baseline_training(args.target, seed, {"training.max_train_examples": size})
                if arm == "transfer":
                    transfer_weights(setup.model, setup.data.vectorizer.vocabulary, setup.data.labels, source)
                row = {"train_examples": int(len(setup.y_train)), "seed": seed, "arm": arm, **fit_and_score(setup)}
                row.pop("test_probabilities")
                rows.append(row)
                print(row, flush=True)
    sizes = sorted({r["train_examples"] for r in rows})
    curve: dict[str, dict[str, Any]] = {}
    for arm in ("scratch", "transfer"):
        means = [statistics.mean(r["test_accuracy"] for r in rows if r["arm"] == arm and r["train_examples"] == n)
                 for n in sizes]
        curve[arm] = {"test_mean_by_train_examples": {str(n): round(m, 4) for n, m in zip(sizes, means, strict=True)},
                      "slope_per_doubling": round(slope_per_doubling(sizes, means), 4) if len(sizes) > 1 else None}
    write_result("learning_curve", {
        "command": f"python bench/learning_curve.py --target {args.target} --source {args.source} "
                   f"--sizes {' '.join(map(str, args.sizes))} --seeds {' '.join(map(str, args.seeds))}",
        "target": args.target, "source": args.source, "seeds": args.seeds, "rows": rows, "curve": curve,
        "machine": machine(), "versions": versions("keras", "tensorflow"),
    }, merge=False)


if __name__ == "__main__":
    main()
