"""Weight transfer benchmark (not a test): does a model trained on a related data set give a
better start than random weights?

    python bench/weight_transfer.py --source studies/imdb.yaml --target studies/amazon.yaml --seeds 1 2 3 4 5

`warm_start.studies` hands a new study earlier *configurations*; this measures handing it
earlier *weights* (`warm_start.weights`). One source model, the baseline trial's configuration (search/warm_start.py)
on the source config's data, trained for --source-epochs. Then, per seed, the same baseline
configuration on the target data, trained as a trial is (search/objective.py's TrialTraining,
the target's max_epochs and patience, best epoch kept) twice:

  scratch   Keras' initial weights
  transfer  the source's weights (models/transfer.py, what `warm_start.weights` does): embedding
            rows by word (a target word the source vocabulary lacks keeps its initial row),
            every other layer as it is (same architecture), the head too (same labels)

Each model is scored once on the target's test file; also the mean-probability ensemble of each
arm's models (the registry's champion rule), since an ensemble is what a study registers. The
source's training time is reported: on a new data set that compute comes on top of the search.
Writes bench/results/weight_transfer.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import yaml
from common import ROOT, accuracy, fit_like_trial, machine, quiet, versions, write_result


def baseline_training(config_path: str, seed: int, overrides: dict[str, Any] | None = None,
                      params_update: dict[str, Any] | None = None) -> Any:
    """TrialTraining of the baseline configuration (with ``params_update`` on top) on
    ``config_path``'s data (trial 0 of a study seeded ``seed``)."""
    from models.params import ModelParams
    from search.config import load_config
    from search.objective import TrialTraining
    from search.warm_start import baseline_params

    config = load_config(ROOT / config_path, overrides={"seed": seed, **(overrides or {})})
    config = config.model_copy(update={"data": config.data.resolved(ROOT)})
    params = ModelParams.from_dict({**baseline_params(config.search_space), **(params_update or {})})
    return TrialTraining.create(config, params, 0)


def save_bundle(setup: Any, directory: Any, extra: dict[str, Any]) -> None:
    """``setup``'s model as a bundle (best.h5 + sidecar.json), as a trial's checkpoint is written."""
    from models.bundle import MODEL_FILE, write_sidecar

    directory.mkdir(parents=True, exist_ok=True)
    setup.model.save(directory / MODEL_FILE)
    write_sidecar(directory, vectorizer=setup.data.vectorizer, labels=setup.data.labels, params=setup.params.to_dict(),
                  extra={"mask_zero": setup.config.training.mask_zero, "source_config": setup.config.study_name,
                         **extra})


def fit_and_score(setup: Any) -> dict[str, Any]:
    from search.objective import MONITOR

    started = time.perf_counter()
    history, probabilities = fit_like_trial(setup)
    return {"val_accuracy": round(max(history[MONITOR]), 4), "epochs": len(history[MONITOR]),
            "test_accuracy": round(accuracy(probabilities, setup.data.y_test), 4),
            "seconds": round(time.perf_counter() - started, 1), "test_probabilities": probabilities}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="studies/imdb.yaml")
    parser.add_argument("--target", default="studies/amazon.yaml")
    parser.add_argument("--source-epochs", type=int, default=2)
    parser.add_argument("--source-params", nargs="*", default=[], metavar="NAME=VALUE",
                        help="change the source's baseline parameters (e.g. max_features=30000); only the "
                             "data-dependent ones keep the architecture the target's baseline must share")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--result", default="weight_transfer", help="bench/results/RESULT.json")
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--save-source", default=None, metavar="DIR",
                        help="write the source model as a bundle (for `warm_start.weights`) and stop")
    args = parser.parse_args()
    quiet()
    from models.bundle import TextClassifier
    from models.runtime import configure_accelerator
    from models.transfer import transfer_weights

    configure_accelerator(cpu_threads=args.cpu_threads)
    source_params = {name: yaml.safe_load(value) for name, value in
                     (item.split("=", 1) for item in args.source_params)}
    source = baseline_training(args.source, 0, {"training.max_epochs": args.source_epochs, "training.patience": 0},
                               source_params)
    started = time.perf_counter()
    source_history = source.fit([])
    source_seconds = time.perf_counter() - started
    print(f"source {args.source}: val {source_history.history['val_accuracy']} in {source_seconds:.0f} s", flush=True)
    if args.save_source:
        save_bundle(source, ROOT / args.save_source, {"source_val_accuracy": source_history.history["val_accuracy"],
                                                      "source_seconds": round(source_seconds, 1)})
        print(f"-> {args.save_source}", flush=True)
        return
    source_model = TextClassifier(source.model, source.data.vectorizer, source.data.labels,
                                  {"mask_zero": source.config.training.mask_zero})
    rows, probabilities = [], {"scratch": [], "transfer": []}
    for seed in args.seeds:
        for arm in ("scratch", "transfer"):
            setup = baseline_training(args.target, seed)
            found = transfer_weights(setup.model, setup.data.vectorizer.vocabulary, setup.data.labels,
                                     source_model).words if arm == "transfer" else None
            row = {"seed": seed, "arm": arm, **fit_and_score(setup)}
            probabilities[arm].append(row.pop("test_probabilities"))
            if found is not None:
                row["target_words_in_source"] = found
            rows.append(row)
            print(row, flush=True)
    y_test = setup.data.y_test
    arms = {}
    for arm in ("scratch", "transfer"):
        tests = [r["test_accuracy"] for r in rows if r["arm"] == arm]
        arms[arm] = {"test_mean": round(statistics.mean(tests), 4), "test_sd": round(statistics.stdev(tests), 4),
                     "val_mean": round(statistics.mean(r["val_accuracy"] for r in rows if r["arm"] == arm), 4),
                     "ensemble_test_accuracy": round(accuracy(np.mean(probabilities[arm], axis=0), y_test), 4)}
    diffs = [t["test_accuracy"] - s["test_accuracy"] for s, t in zip(rows[0::2], rows[1::2], strict=True)]
    write_result(args.result, {
        "command": f"python bench/weight_transfer.py --source {args.source} --target {args.target} "
                   f"--source-epochs {args.source_epochs}"
                   + (f" --source-params {' '.join(args.source_params)}" if args.source_params else "")
                   + f" --seeds {' '.join(map(str, args.seeds))}"
                   + (f" --result {args.result}" if args.result != "weight_transfer" else ""),
        "source": {"config": args.source, "params": source.params.to_dict(), "epochs": args.source_epochs,
                   "val_accuracy": [round(v, 4) for v in source_history.history["val_accuracy"]],
                   "seconds": round(source_seconds, 1), "vocabulary": len(source.data.vectorizer.vocabulary)},
        "target": {"config": args.target, "params": setup.params.to_dict(), "n_test": int(len(y_test)),
                   "vocabulary": len(setup.data.vectorizer.vocabulary)},
        "seeds": args.seeds, "rows": rows, "arms": arms,
        "transfer_minus_scratch": {"mean": round(statistics.mean(diffs), 4),
                                   "standard_error": round(statistics.stdev(diffs) / len(diffs) ** 0.5, 4),
                                   "transfer_wins": sum(d > 0 for d in diffs)},
        "machine": machine(), "versions": versions("keras", "tensorflow"),
    }, merge=False)


if __name__ == "__main__":
    main()
