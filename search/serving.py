"""The champion as an MLflow pyfunc model that classifies raw text.

MLflow's generic pyfunc cannot feed strings to a Keras model, so the registered model wraps
the trial's bundle (``best.h5`` + ``sidecar.json``: vocabulary, sequence length, padding,
label names), or the ensemble of several (``ensemble.json`` + one bundle per member), in a
``PythonModel``. It ships this project's ``data_pipeline``/``models`` code
with it (``code_paths``), so ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` work in
any environment with the pinned libraries, this repository not needed.

Input: a list of strings, a string, a pandas Series, or a DataFrame with a ``text`` column
(the ``inputs`` and ``dataframe_split`` forms of ``POST /invocations``). Output: a DataFrame
with ``label`` and ``probability`` per text, the same numbers ``python -m search predict``
prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = [str(ROOT / "data_pipeline"), str(ROOT / "models"), str(ROOT / "search")]
INPUT_EXAMPLE = pd.DataFrame({"text": ["Great product, works perfectly", "Broke after a day"]})


def texts_of(model_input: Any) -> list[str]:
    """Every accepted input form as a list of texts."""
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        return [str(t) for t in model_input[column].tolist()]
    if isinstance(model_input, pd.Series):
        return [str(t) for t in model_input.tolist()]
    if isinstance(model_input, dict):
        return texts_of(model_input.get("text", next(iter(model_input.values()), [])))
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, np.ndarray):
        return [str(t) for t in model_input.reshape(-1).tolist()]
    return [str(t) for t in model_input]


class RawTextClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from models.ensemble import load_classifier

        self.classifier = load_classifier(context.artifacts["bundle"])

    # No type hints here: MLflow would try to derive the signature from them (and warn); the
    # explicit signature below is the contract.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        texts = texts_of(model_input)
        probs = self.classifier.probabilities(texts)
        best = probs.argmax(axis=-1) if len(texts) else np.zeros(0, dtype=int)
        labels = self.classifier.labels
        return pd.DataFrame({"label": [labels[i] for i in best],
                             "probability": probs[np.arange(len(texts)), best].astype(float)})


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    # One unnamed string column: MLflow then accepts a plain list of strings as well as a
    # DataFrame (a named `text` column would reject lists: "Model is missing inputs ['text']").
    return ModelSignature(inputs=Schema([ColSpec("string")]),
                          outputs=Schema([ColSpec("string", "label"), ColSpec("double", "probability")]))
