"""Linear reference (not a test): how far a tuned bag-of-n-grams model gets on the same split.

    python bench/linear_reference.py --config studies/amazon.yaml studies/imdb.yaml

A TF-IDF (sublinear tf) unigram + bigram logistic regression on the study's own tokens and
train/validation split, its inverse regularization C chosen on the validation split, scored once
on the test file. It is the usual strong baseline for review polarity and tells how much of a
goal is within reach of the data (no pretrained embeddings are available here). scikit-learn
does the work; nothing here is written by hand but the loop over C.

Writes bench/results/linear_reference.json, one entry per config (merged with earlier runs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import ROOT, merged_results, quiet, versions, write_result

C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)


def measure(config_path: str) -> dict[str, object]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from data_pipeline import load_corpus
    from search.config import load_config

    config = load_config(ROOT / config_path)
    corpus = load_corpus(config.data.resolved(ROOT))
    assert corpus.test_tokens is not None and corpus.y_test is not None, f"{config_path}: needs a test_file"
    started = time.perf_counter()
    # The project's tokens (lower-cased, punctuation stripped), joined so that the vectorizer
    # only splits them again and forms bigrams.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+", lowercase=False)
    x_train = vectorizer.fit_transform(" ".join(t) for t in corpus.train_tokens)
    x_val = vectorizer.transform(" ".join(t) for t in corpus.val_tokens)
    x_test = vectorizer.transform(" ".join(t) for t in corpus.test_tokens)
    by_c = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=3000).fit(x_train, corpus.y_train)
        by_c[c] = (float(np.mean(model.predict(x_val) == corpus.y_val)), model)
    best_c = max(C_GRID, key=lambda c: by_c[c][0])  # first of equals: the strongest regularization
    test = float(np.mean(by_c[best_c][1].predict(x_test) == corpus.y_test))
    return {
        "model": "tfidf(1,2)-gram logistic regression", "train_examples": len(corpus.train_tokens),
        "features": x_train.shape[1], "val_accuracy_by_c": {str(c): round(v, 4) for c, (v, _) in by_c.items()},
        "chosen_c": best_c, "val_accuracy": round(by_c[best_c][0], 4), "test_accuracy": round(test, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["studies/amazon.yaml", "studies/imdb.yaml"])
    args = parser.parse_args()
    quiet()
    results = {}
    for path in args.config:
        results[path] = measure(path)
        print(path, results[path], flush=True)
    write_result("linear_reference", {"results": merged_results("linear_reference", results),
                                      "versions": versions("scikit-learn")})


if __name__ == "__main__":
    main()
