"""Bad input, table-driven: every case exits 2 with one line naming the file/key/URL, prints no
traceback and no secret, and writes nothing that was not there before.

Each case builds its files in a fresh working directory (the CLI's default paths land there
too), runs ``python -m search`` in-process, and compares the directory before and after.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from search.cli import main
from tests.conftest import tiny_config

SECRET = "s3cr3t-pw"
GOOD = "__label__1 a fine product that works\n__label__2 broke after a day, awful\n" * 40


@dataclass
class Case:
    id: str
    argv: Callable[[Path], list[str]]
    expect: str  # a substring of the one error line (file, key or URL named)
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None


def config(tmp: Path, **changes: Any) -> dict[str, Any]:
    files = {"train": tmp / "train.txt", "test": tmp / "test.txt"}
    data = tiny_config(tmp, files)
    data["tracking"] = {"uri": f"sqlite:///{tmp}/mlruns/mlflow.db"}
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data


def run_with(**changes: Any) -> Callable[[Path], list[str]]:
    """argv for `run` on a config with ``changes`` (dotted keys; '__' stands for '.')."""

    def argv(tmp: Path) -> list[str]:
        path = tmp / "study.yaml"
        text = yaml.safe_dump(config(tmp, **{k.replace("__", "."): v for k, v in changes.items()}))
        path.write_text(text.replace("{tmp}", str(tmp)).replace("{file}", str(tmp / "afile")))
        return ["run", "--config", str(path), "--n-trials", "1"]

    return argv


def run_data(train: str | None = None, **data: Any) -> Callable[[Path], list[str]]:
    overrides = {f"data.{k}": v for k, v in data.items()}
    if train:
        overrides["data.train_file"] = train
    return lambda tmp: run_with(**{k.replace(".", "__"): (str(tmp / v) if k.endswith("_file") else v)
                                   for k, v in overrides.items()})(tmp)


def cli(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [a.replace("{tmp}", str(tmp)) for a in args]


def gz(text: str) -> bytes:
    return gzip.compress(text.encode())


def bundle(tmp: Path, sidecar: Any = None, h5: bytes | None = None) -> None:
    """A real tiny bundle, then optionally a broken sidecar or .h5."""
    from data_pipeline import Vectorizer
    from models.builder import build_model
    from models.bundle import MODEL_FILE, SIDECAR_FILE, write_sidecar
    from models.params import ModelParams

    directory = tmp / "bundle"
    directory.mkdir()
    params = ModelParams(embedding_dim=4, units=2, max_features=8, sequence_length=6)
    build_model(params, 2, mask_zero=True).save(directory / MODEL_FILE)
    write_sidecar(directory, vectorizer=Vectorizer(["", "[UNK]", "a", "b"], 6), labels=["1", "2"],
                  params=params.to_dict(), extra={"mask_zero": True})
    if sidecar is not None:
        (directory / SIDECAR_FILE).write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    if h5 is not None:
        (directory / MODEL_FILE).write_bytes(h5)


def sidecar_with(**changes: Any) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        bundle(tmp)
        path = tmp / "bundle" / "sidecar.json"
        body = json.loads(path.read_text())
        for key, value in changes.items():
            if value is None:
                body.pop(key)
            else:
                body[key] = value
        path.write_text(json.dumps(body))

    return prepare


def existing_study_db(tmp: Path) -> None:
    import optuna

    optuna.create_study(study_name="other", storage=f"sqlite:///{tmp}/studies.db")


def empty_tracking_store(tmp: Path) -> None:
    """The config's tracking store, created as a study's first run creates it, with no model."""
    from search.tracking import MlflowTracker

    MlflowTracker(f"sqlite:///{tmp}/mlruns/mlflow.db", "other").ensure_experiment()


PG = "postgresql+psycopg://optuna:{pw}@127.0.0.1:1/optuna"
CASES = [
    # -- data files ------------------------------------------------------------------------------
    Case("train file missing", run_data("nope.txt"), "nope.txt: file not found"),
    Case("train file empty", run_data(), "train.txt: file is empty", {"train.txt": ""}),
    Case("only blank lines", run_data(), "train.txt: file is empty", {"train.txt": "\n  \n\n"}),
    Case("line without label", run_data(), "train.txt:2: line does not start with a __label__",
         {"train.txt": "__label__1 ok\nno label here\n"}),
    Case("label without text", run_data(), "train.txt:1: label '1' has no text",
         {"train.txt": "__label__1   \n__label__2 text\n"}),
    Case("several labels", run_data(), "train.txt:1: several labels on one line",
         {"train.txt": "__label__1 __label__2 text\n"}),
    Case("undecodable bytes", run_data(), "train.txt:2: undecodable bytes (not UTF-8)",
         {"train.txt": b"__label__1 ok\n__label__2 caf\xe9\n"}),
    Case("one class only", run_data(), "needs at least 2 classes", {"train.txt": "__label__1 same\n" * 50}),
    Case("test label never seen in training", run_data(), "test.txt:1: label '3' never occurs",
         {"test.txt": "__label__3 unknown label\n"}),
    Case("not gzip", run_data("train.txt.gz"), "train.txt.gz: not a valid gzip file",
         {"train.txt.gz": b"plain text, not gzip"}),
    Case("gzip truncated", run_data("train.txt.gz"), "train.txt.gz: not a valid gzip file",
         {"train.txt.gz": gz(GOOD)[:60]}),
    Case("gzip corrupted mid-stream", run_data("train.txt.gz"), "train.txt.gz: not a valid gzip file",
         {"train.txt.gz": gz(GOOD)[:30] + b"\x00" * 40 + gz(GOOD)[70:]}),
    Case("train path is a directory", run_data("adir"), "adir: not a regular file",
         prepare=lambda tmp: (tmp / "adir").mkdir()),
    Case("validation split too small", run_data(), "training data too small",
         {"train.txt": "__label__1 a\n__label__2 b\n" * 10}),
    Case("csv without text column", run_data("t.csv", format="csv"), "t.csv: no column 'text'",
         {"t.csv": "label,body\n1,hello\n"}),
    Case("csv without label column", run_data("t.csv", format="csv"), "t.csv: no column 'label'",
         {"t.csv": "text,class\nhello,1\n"}),
    Case("csv header only", run_data("t.csv", format="csv"), "t.csv: file has a header but no rows",
         {"t.csv": "text,label\n"}),
    Case("csv empty label", run_data("t.csv", format="csv"), "t.csv:3: empty 'label'",
         {"t.csv": "text,label\nhello,1\nworld,\n"}),
    Case("csv empty text", run_data("t.csv", format="csv"), "t.csv:2: empty 'text'",
         {"t.csv": "text,label\n  ,1\n"}),
    Case("csv field over the size limit", run_data("t.csv", format="csv"), "t.csv:2: malformed CSV",
         {"t.csv": "text,label\n" + "x" * 200_000 + ",1\n"}),
    Case("csv empty file", run_data("t.csv", format="csv"), "t.csv: file is empty", {"t.csv": ""}),
    # -- config ----------------------------------------------------------------------------------
    Case("config missing", cli("run", "--config", "{tmp}/missing.yaml"), "missing.yaml: file not found"),
    Case("config not YAML", cli("run", "--config", "{tmp}/bad.yaml"), "bad.yaml: not valid YAML",
         {"bad.yaml": "study_name: [unclosed\n"}),
    Case("config not a mapping", cli("run", "--config", "{tmp}/list.yaml"), "top level must be a mapping",
         {"list.yaml": "- a\n- b\n"}),
    Case("unknown top-level key", run_with(colour="blue"), "colour: Extra inputs are not permitted"),
    Case("unknown search parameter", run_with(search_space__kernel={"value": 3}), "unknown parameter(s) kernel"),
    Case("range low > high", run_with(search_space__units={"low": 64, "high": 8}), "units: low (64) > high (8)"),
    Case("empty choices", run_with(search_space__cell={"choices": []}), "'choices' is empty"),
    Case("batch_size 0", run_with(search_space__batch_size={"value": 0}), "batch_size must be in [1"),
    Case("dropout 1.5", run_with(search_space__dropout={"value": 1.5}), "dropout must be in [0"),
    Case("sequence_length 10 million", run_with(search_space__sequence_length={"value": 10_000_000}),
         "sequence_length must be in [1, 20000]"),
    Case("learning_rate 1000 (YAML int)", run_with(search_space__learning_rate={"value": 1000}),
         "learning_rate must be in"),
    Case("learning_rate range end too high", run_with(search_space__learning_rate={"low": 1e-4, "high": 5.0}),
         "learning_rate must be in"),
    Case("unknown cell", run_with(search_space__cell={"choices": ["GRU", "CNN"]}), "'CNN' is not one of"),
    Case("bool given a string", run_with(search_space__bidirectional={"value": "yes"}),
         "bidirectional: 'yes' is not a bool"),
    Case("int range with float ends", run_with(search_space__depth={"low": 1, "high": 2.5}),
         "depth: an integer range needs integer"),
    Case("log range from 0", run_with(search_space__learning_rate={"low": 0.0, "high": 0.1, "log": True}),
         "a log range needs low > 0"),
    Case("enqueue unknown parameter", run_with(enqueue=[{"kernel": 3}]), "enqueue[0].kernel: unknown parameter"),
    Case("enqueue bad value", run_with(enqueue=[{"units": -4}]), "enqueue[0].units: units must be in"),
    Case("enqueue value not offered", run_with(enqueue=[{"units": 16}]),
         "enqueue[0].units: 16 is not one of the search space's choices [4, 8]"),
    Case("warm-start study missing", run_with(warm_start={"studies": ["gone"]}),
         "warm_start.studies: no study 'gone'"),
    Case("warm-start study not in storage", run_with(warm_start={"studies": ["gone"],
                                                                 "storage": "sqlite:///{tmp}/studies.db"}),
         "warm_start.studies: no study 'gone' in sqlite:///", prepare=existing_study_db),
    Case("warm-start experiment missing", run_with(warm_start={"experiments": ["old"]}),
         "warm_start.experiments: no experiment 'old'"),
    Case("warm-start top_k 0", run_with(warm_start={"studies": ["a"], "top_k": 0}), "warm_start.top_k"),
    Case("warm-start unknown key", run_with(warm_start={"study": "a"}), "warm_start.study: Extra inputs"),
    Case("warm-start weights missing", run_with(warm_start={"weights": "{tmp}/nowhere"}),
         "warm_start.weights: {tmp}/nowhere/best.h5: not found"),
    Case("warm-start weights sidecar not JSON", run_with(warm_start={"weights": "{tmp}/bundle"}),
         "warm_start.weights: {tmp}/bundle/sidecar.json: not a valid sidecar",
         prepare=lambda tmp: bundle(tmp, sidecar="{not json")),
    Case("warm-start weights without architecture", run_with(warm_start={"weights": "{tmp}/bundle"}),
         "warm_start.weights: {tmp}/bundle/sidecar.json: params lack bidirectional, depth",
         prepare=sidecar_with(params={"cell": "GRU"})),
    Case("warm-start weights bad cell", run_with(warm_start={"weights": "{tmp}/bundle"}),
         "warm_start.weights: sidecar params.cell: 'Transformer' is not one of",
         prepare=sidecar_with(params={"cell": "Transformer", "bidirectional": True, "depth": 1, "embedding_dim": 4,
                                      "units": 2, "pooling": "last", "initializer": "orthogonal"})),
    Case("warm-start weights registry URI without alias", run_with(warm_start={"weights": "models:/tiny"}),
         "warm_start.weights: model URI 'models:/tiny': expected models:/NAME@ALIAS"),
    Case("warm-start weights from a tracking store that does not exist",
         run_with(warm_start={"weights": "models:/tiny@champion"}),
         "warm_start.weights: tracking store sqlite:///{tmp}/mlruns/mlflow.db: no such database file"),
    Case("warm-start weights registered model missing", run_with(warm_start={"weights": "models:/tiny@champion"}),
         "warm_start.weights: model 'tiny@champion' not found on sqlite:///", prepare=empty_tracking_store),
    Case("unknown sampler", run_with(sampler={"type": "cmaes"}), "sampler.type: Input should be"),
    Case("hyperband reduction factor 1", run_with(pruner={"type": "hyperband", "reduction_factor": 1}),
         "pruner.reduction_factor"),
    Case("max_epochs 0", run_with(training={"max_epochs": 0}), "training.max_epochs"),
    Case("max_consecutive_failures -1", run_with(worker={"max_consecutive_failures": -1}),
         "worker.max_consecutive_failures"),
    Case("validation_fraction 1.5", run_data(validation_fraction=1.5), "data.validation_fraction"),
    Case("two-character delimiter", run_data(delimiter="ab"), "delimiter must be a single character"),
    Case("study name with spaces", run_with(study_name="my study"), "study_name: String should match"),
    Case("grid with a float range", run_with(sampler={"type": "grid"}),
         "grid needs 'choices' or 'value' for learning_rate"),
    Case("n_trials 0 in config", run_with(n_trials=0), "n_trials: Input should be greater than or equal to 1"),
    Case("max_stagnation_trials 0", run_with(max_stagnation_trials=0),
         "max_stagnation_trials: Input should be greater than or equal to 1"),
    Case("max-stagnation-trials -1", lambda tmp: [*run_with()(tmp), "--max-stagnation-trials", "-1"],
         "argument --max-stagnation-trials: must be a whole number >= 0"),
    Case("zero step", run_with(search_space__units={"low": 8, "high": 64, "step": 0}), "'step' must be > 0"),
    # -- storage and tracking URLs ---------------------------------------------------------------
    Case("password with /", run_with(storage=PG.format(pw="se/" + SECRET)), "127.0.0.1:1/optuna unreachable"),
    Case("password with #", run_with(storage=PG.format(pw="a#" + SECRET)), "127.0.0.1:1/optuna unreachable"),
    Case("password with :", run_with(storage=PG.format(pw="a:" + SECRET)), "127.0.0.1:1/optuna unreachable"),
    Case("password with raw @", run_with(storage=PG.format(pw="a@" + SECRET)), "127.0.0.1:1/optuna unreachable"),
    Case("percent-encoded password", run_with(storage=PG.format(pw="a%40" + SECRET + "%2F")),
         "127.0.0.1:1/optuna unreachable"),
    Case("storage from SEARCH_STORAGE", run_with(), "127.0.0.1:1/optuna unreachable",
         env={"SEARCH_STORAGE": PG.format(pw="env/" + SECRET)}),
    Case("unknown storage dialect", run_with(storage="nosuchdb://u:" + SECRET + "@h/db"), "nosuchdb://u:***@h/db"),
    Case("tracking server down, password in URL", run_with(tracking={"uri": f"http://u:{SECRET}@127.0.0.1:1"}),
         "tracking server http://u:***@127.0.0.1:1 unreachable"),
    Case("tracking from MLFLOW_TRACKING_URI", run_with(tracking={}), "tracking server http://u:***@127.0.0.1:1",
         env={"MLFLOW_TRACKING_URI": f"http://u:/{SECRET}@127.0.0.1:1"}),
    # Not a chmod'ed folder: root (CI) may write there anyway; /proc/self takes no files for anyone.
    Case("sqlite where no file can be created", run_with(storage="sqlite:////proc/self/nope/s.db"),
         "/proc/self is not a writable directory"),
    Case("sqlite under a file", run_with(storage="sqlite:///{file}/sub/s.db"), "is not a writable directory",
         {"afile": "x"}),
    # -- command line ----------------------------------------------------------------------------
    Case("n-trials -1", lambda tmp: [*run_with()(tmp)[:3], "--n-trials", "-1"], "argument --n-trials: must be > 0"),
    Case("cpu-threads 0", lambda tmp: [*run_with()(tmp), "--cpu-threads", "0"], "argument --cpu-threads: must be > 0"),
    Case("SEARCH_CPU_THREADS not a number", run_with(), "argument --cpu-threads: 'two' is not a number",
         env={"SEARCH_CPU_THREADS": "two"}),
    Case("timeout -5", lambda tmp: [*run_with()(tmp), "--timeout", "-5"], "argument --timeout: must be > 0"),
    Case("timeout nan", lambda tmp: [*run_with()(tmp), "--timeout", "nan"], "argument --timeout: must be > 0"),
    Case("target-trials 0", lambda tmp: ["worker", *run_with()(tmp)[1:3], "--target-trials", "0"],
         "argument --target-trials: must be > 0"),
    Case("unknown command", cli("train"), "argument COMMAND: invalid choice: 'train'"),
    Case("no config and no storage", cli("run"), "no --config given"),
    Case("predict: no such bundle", cli("predict", "--model", "{tmp}/nobundle", "hi"), "nobundle: no such bundle"),
    Case("predict: --file missing", cli("predict", "--model", "{tmp}", "--file", "{tmp}/none.txt"),
         "--file {tmp}/none.txt: file not found"),
    Case("predict: --file not UTF-8", cli("predict", "--model", "{tmp}/bundle", "--file", "{tmp}/in.txt"),
         "in.txt: undecodable bytes", {"in.txt": b"caf\xe9\n"}, prepare=lambda tmp: bundle(tmp)),
    Case("predict: malformed model URI", cli("predict", "--model", "models:/onlyname", "hi"),
         "expected models:/NAME@ALIAS"),
    Case("report: --out is a file", cli("report", "--storage", "sqlite:///{tmp}/studies.db", "--study-name",
                                        "other", "--out", "{tmp}/afile"), "--out {tmp}/afile: exists and is not",
         {"afile": "x"}, prepare=existing_study_db),
    Case("report: mistyped sqlite path", cli("report", "--storage", "sqlite:///{tmp}/typo.db", "--study-name", "x",
                                             "--out", "{tmp}/rep"), "no such database file"),
    Case("report: unknown study", cli("report", "--storage", "sqlite:///{tmp}/studies.db", "--study-name", "nope",
                                      "--out", "{tmp}/rep"), "study 'nope' not found", prepare=existing_study_db),
    Case("pull: mistyped sqlite tracking store", cli("pull", "--model", "m", "--out", "{tmp}/p", "--tracking-uri",
                                                     "sqlite:///{tmp}/typo.db"), "no such database file"),
    Case("register: no study database", lambda tmp: ["register", *run_with()(tmp)[1:3]], "no such database file"),
    Case("worker: study not created", lambda tmp: ["worker", *run_with(storage="sqlite:///{tmp}/studies.db")(tmp)[
        1:3], "--target-trials", "1", "--no-tracking"], "study 'tiny' does not exist", prepare=existing_study_db),
    Case("ui: database store that does not answer", cli("ui", "--tracking-uri",
                                                        f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/mlflow"),
         "storage postgresql+psycopg://u:***@127.0.0.1:1/mlflow unreachable"),
    Case("dashboard: mistyped sqlite path", cli("dashboard", "--storage", "sqlite:///{tmp}/typo.db"),
         "no such database file"),
    # -- model bundles ---------------------------------------------------------------------------
    Case("bundle: sidecar not JSON", cli("predict", "--model", "{tmp}/bundle", "hi"), "sidecar.json: not a valid",
         prepare=lambda tmp: bundle(tmp, sidecar="{not json")),
    Case("bundle: sidecar is a list", cli("predict", "--model", "{tmp}/bundle", "hi"), "sidecar.json: not a valid",
         prepare=lambda tmp: bundle(tmp, sidecar=[1, 2])),
    Case("bundle: unknown sidecar format", cli("predict", "--model", "{tmp}/bundle", "hi"),
         "unsupported sidecar format 9", prepare=sidecar_with(format=9)),
    Case("bundle: no vectorizer", cli("predict", "--model", "{tmp}/bundle", "hi"), "missing or bad field",
         prepare=sidecar_with(vectorizer=None)),
    Case("bundle: labels do not match the model", cli("predict", "--model", "{tmp}/bundle", "hi"),
         "3 labels do not match the model's 1 output", prepare=sidecar_with(labels=["a", "b", "c"])),
    Case("bundle: vocabulary larger than the embedding", cli("predict", "--model", "{tmp}/bundle", "hi"),
         "does not fit the model's embedding", prepare=sidecar_with(vectorizer={
             "tokenizer_version": 1, "sequence_length": 6, "padding": "post", "truncating": "post",
             "vocabulary": ["", "[UNK]"] + [f"w{i}" for i in range(20)]})),
    Case("bundle: .h5 Keras refuses", cli("predict", "--model", "{tmp}/bundle", "hi"), "best.h5: Keras cannot load",
         prepare=lambda tmp: bundle(tmp, h5=b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)),
    Case("bundle: best.h5 missing", cli("predict", "--model", "{tmp}/bundle", "hi"), "best.h5: not found",
         prepare=lambda tmp: (bundle(tmp), (tmp / "bundle" / "best.h5").unlink())),
]


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_there_are_at_least_60_cases() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, tiny_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("train.txt", "test.txt"):
        (tmp_path / name).write_bytes(tiny_files[name.removesuffix(".txt")].read_bytes())
    for name, body in case.files.items():
        (tmp_path / name).write_bytes(body if isinstance(body, bytes) else body.encode())
    if case.prepare:
        case.prepare(tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    argv = case.argv(tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    code = exit_info.value.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.expect.replace("{tmp}", str(tmp_path)) in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    assert snapshot(tmp_path) == before, "something was written"
