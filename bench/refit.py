"""Refit probe (not a test): would retraining the ensemble members on train + validation help?

    python bench/refit.py --config studies/amazon.yaml --trials 8,281,196,319,156,294,302,428

Takes the named COMPLETE trials of the search bench's stored study (.cache/bench/search-<study>/)
and trains each twice, with its own params and seed, for its best epoch count (``best_epoch`` + 1,
no checkpoint choice possible once validation is trained on): on the training split alone, and on
training + validation with the vocabulary rebuilt from both. Both arms score the test split; the
ensemble is the mean of the members' probabilities, reported for the top 1..N. Resumable: each
trained member's test probabilities are kept under .cache/bench/refit-<study>/.
Writes bench/results/refit_<study>.json.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from common import ROOT, quiet, write_result

ARMS = ("train_only", "train_val")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--trials", required=True, help="comma-separated trial numbers, best first")
    args = parser.parse_args()
    quiet()
    import optuna

    from data_pipeline import load_corpus
    from models.runtime import configure_accelerator
    from search.config import load_config

    config = load_config(ROOT / args.config)
    stored = ROOT / ".cache" / "bench" / f"search-{config.study_name}" / "study.db"
    study = optuna.load_study(study_name=config.study_name, storage=f"sqlite:///{stored}")
    numbers = [int(n) for n in args.trials.split(",")]
    work = ROOT / ".cache" / "bench" / f"refit-{config.study_name}"
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "members.json"
    members = json.loads(log_path.read_text()) if log_path.exists() else {}
    corpus = load_corpus(config.data)
    assert corpus.test_tokens is not None and corpus.y_test is not None, "needs a test_file"
    device = configure_accelerator(False, cpu_threads=1)
    for n in numbers:
        if str(n) in members:
            continue
        trial = study.trials[n]
        epochs = int(trial.user_attrs["best_epoch"]) + 1
        row: dict[str, object] = {"epochs": epochs, "val_accuracy": trial.value}
        for arm in ARMS:
            tokens = corpus.train_tokens + (corpus.val_tokens if arm == "train_val" else [])
            y = np.concatenate([corpus.y_train, corpus.y_val]) if arm == "train_val" else corpus.y_train
            probs, seconds = train_and_score(config, trial, tokens, y, corpus, epochs)
            np.save(work / f"{n}.{arm}.npy", probs)
            row[arm] = {"test_accuracy": float((probs.argmax(-1) == corpus.y_test).mean()), "seconds": seconds}
        members[str(n)] = row
        log_path.write_text(json.dumps(members, indent=1))
        print(n, row, flush=True)
    curves = {arm: [float((np.mean([np.load(work / f"{n}.{arm}.npy") for n in numbers[:k]], 0).argmax(-1)
                           == corpus.y_test).mean()) for k in range(1, len(numbers) + 1)] for arm in ARMS}
    body = {
        "command": " ".join(["python", "bench/refit.py", "--config", args.config, "--trials", args.trials]),
        "device": device, "trials": numbers, "members": {n: members[str(n)] for n in map(str, numbers)},
        "ensemble_test_accuracy_top_k": curves,
        "ensemble_test_accuracy": {arm: curves[arm][-1] for arm in ARMS},
    }
    write_result(f"refit_{config.study_name}", body, merge=False)
    print(json.dumps(body["ensemble_test_accuracy"]))
    return 0


def train_and_score(config, trial, tokens, y, corpus, epochs):  # type: ignore[no-untyped-def]
    """(test probabilities, seconds) of the trial's params trained on ``tokens``/``y``."""
    import keras

    from data_pipeline import Vectorizer, build_vocabulary
    from models import training
    from models.builder import build_model
    from models.bundle import TextClassifier
    from models.params import ModelParams

    params = ModelParams.from_dict(dict(trial.params))
    vectorizer = Vectorizer(build_vocabulary(tokens, params.max_features), params.sequence_length,
                            config.data.padding, config.data.truncating)
    x, x_test = vectorizer.encode_tokens(tokens), vectorizer.encode_tokens(corpus.test_tokens)
    seed = (config.seed or 0) + trial.number  # the trial's own seed (search/objective.py)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = build_model(params, len(corpus.labels), mask_zero=config.training.mask_zero)
    started = time.perf_counter()
    # A token validation slice: fit needs one; nothing is chosen on it (fixed epoch count).
    training.fit(model, x, y, validation=(x[:256], y[:256]), epochs=epochs, batch_size=params.batch_size,
                 callbacks=[], bucketing=training.can_bucket(config.data.padding, config.training.mask_zero),
                 seed=seed)
    # Scored as a served model is: bucketing as trained, a sigmoid head as two columns.
    classifier = TextClassifier(model, vectorizer, corpus.labels, {"mask_zero": config.training.mask_zero})
    return classifier.probabilities_of_ids(x_test), round(time.perf_counter() - started, 1)


if __name__ == "__main__":
    raise SystemExit(main())
