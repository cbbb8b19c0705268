"""What a new study runs first: value mapping, the baseline trial, order and de-duplication."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_pipeline.stats import CorpusStats
from search.config import ConfigError, ParamSpec, parse_config
from search.warm_start import (
    BASELINE,
    NEIGHBOUR_GROUPS,
    PORTFOLIO,
    baseline_params,
    map_params,
    map_value,
    neighbour_params,
    portfolio_params,
    warm_start_params,
)
from tests.conftest import tiny_config


def spec(**kw: object) -> ParamSpec:
    return ParamSpec(**kw)  # type: ignore[arg-type]


def test_offered_choice_is_kept_and_others_go_to_the_nearest_on_a_log_scale() -> None:
    units = spec(choices=[16, 32, 256])
    assert map_value("units", 32, units) == 32
    assert map_value("units", 64, units) == 32  # 64/32 = 2 < 256/64 = 4 (linear: 256 - 64 > 64 - 32 too)
    assert map_value("units", 120, units) == 256  # log: 256/120 < 120/32; linear would pick 32
    assert map_value("dropout", 0.25, spec(choices=[0.0, 0.2, 0.5])) == 0.2


def test_data_dependent_sizes_keep_their_relative_position() -> None:
    # The source's 90th-percentile length (middle of 3) becomes this data set's middle choice,
    # although 200 is nearest to 176 on any scale.
    lengths = spec(choices=[176, 464, 912])
    assert map_value("sequence_length", 200, lengths, source_choices=[100, 200, 400]) == 464
    assert map_value("max_features", 400, spec(choices=[3000, 6000]), source_choices=[100, 200, 400]) == 6000
    # Without the source's choices (an MLflow run) the nearest value is used.
    assert map_value("sequence_length", 200, lengths) == 176


def test_ranges_clip_and_respect_the_step() -> None:
    assert map_value("learning_rate", 0.5, spec(low=1e-4, high=1e-2, log=True)) == 1e-2
    assert map_value("depth", 7, spec(low=1, high=3)) == 3
    assert map_value("units", 50, spec(low=16, high=128, step=16)) == 48


def test_what_the_space_cannot_take_is_left_to_the_sampler() -> None:
    assert map_value("cell", "LSTM", spec(choices=["GRU", "SimpleRNN"])) is None
    assert map_value("units", 64, spec(value=32)) is None  # fixed: nothing to suggest
    assert map_value("bidirectional", 1, spec(choices=[True, False])) is None  # an int is not a bool
    space = {"regularizer": spec(choices=["none", "l2"]), "regularizer_strength": spec(low=1e-7, high=1e-4)}
    assert map_params({"regularizer": "l1", "regularizer_strength": 1e-3, "kernel": 3}, space) == {
        "regularizer_strength": 1e-4}
    assert map_params({"regularizer": "none", "regularizer_strength": 1e-5}, space) == {"regularizer": "none"}


def _default_space(tmp_path: Path) -> dict[str, ParamSpec]:
    """The default search space, its lengths and vocabularies derived from an Amazon-like corpus."""
    files = {"train": tmp_path / "t.txt", "test": tmp_path / "s.txt"}
    raw = tiny_config(tmp_path, files)
    raw["search_space"] = {}
    stats = CorpusStats(n_train=5000, n_classes=2, mean_tokens=78.5, token_percentiles={"50": 70, "90": 143, "99": 179},
                        vocabulary=28304, vocabulary_min2=12195)
    return parse_config(raw).with_data_aware_space(stats).search_space


def test_baseline_takes_the_middle_of_data_derived_choices(tmp_path: Path) -> None:
    params = baseline_params(_default_space(tmp_path))
    assert params["sequence_length"] == 144 and params["max_features"] == 6000
    assert {k: params[k] for k in BASELINE} == BASELINE  # the default space offers every baseline value


def test_order_dedupe_and_which_samplers_get_a_baseline(tmp_path: Path) -> None:
    files = {"train": tmp_path / "t.txt", "test": tmp_path / "s.txt"}
    raw = tiny_config(tmp_path, files)
    base = baseline_params(parse_config(raw).search_space)
    first = {"cell": "SimpleRNN", "units": 4}
    config = parse_config({**raw, "enqueue": [first, base]})
    assert warm_start_params(config) == [first, base]  # the baseline is not queued twice
    assert warm_start_params(parse_config({**raw, "sampler": {"type": "random"}})) == []
    off = parse_config({**raw, "sampler": {"type": "tpe", "baseline_trial": False}})
    assert warm_start_params(off) == []


def test_portfolio_maps_the_best_of_earlier_searches_and_skips_those_on_this_training_file(tmp_path: Path) -> None:
    space = _default_space(tmp_path)
    entries = portfolio_params(space, "another file")
    assert len(entries) == len(PORTFOLIO) == 4
    imdb, reuters, imdb_2, reuters_2 = entries
    lengths, vocabularies = space["sequence_length"].values, space["max_features"].values
    assert lengths is not None and vocabularies is not None
    # Data-derived sizes keep their position among the source study's choices, not the nearest
    # number: IMDB's longest length (912 tokens) becomes this data set's longest (184), its
    # smallest vocabulary this data set's smallest; Reuters' middle choices become the middle.
    assert (imdb["sequence_length"], imdb["max_features"]) == (lengths[-1], vocabularies[0])
    assert (reuters["sequence_length"], reuters["max_features"]) == (144, 6000)
    assert (imdb_2["sequence_length"], imdb_2["max_features"]) == (lengths[-1], vocabularies[-1])
    assert [(p["cell"], p["bidirectional"], p["pooling"]) for p in entries] == [
        ("GRU", False, "last"), ("LSTM", True, "max"), ("LSTM", True, "max"), ("GRU", False, "max")]
    assert "regularizer_strength" not in imdb_2  # no regularizer: its strength is left out
    for params in entries:
        for name, value in params.items():
            values = space[name].values
            assert values is None or value in values, name
            if values is None:
                assert space[name].low <= value <= space[name].high, name  # type: ignore[operator]
    assert portfolio_params(space, PORTFOLIO[0]["train_sha256"]) == [reuters, reuters_2]  # a study on IMDB itself


def test_portfolio_runs_after_warm_starts_and_before_the_baseline(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    raw = tiny_config(tmp_path, tiny_files)
    raw["sampler"] = {"type": "tpe", "portfolio": True}
    first = {"cell": "SimpleRNN", "units": 4}
    config = parse_config({**raw, "enqueue": [first]})
    queued = warm_start_params(config)
    assert queued == [first, *portfolio_params(config.search_space, "not the tiny file"),
                      baseline_params(config.search_space)]
    assert len(queued) == 6  # mapped onto the tiny space, the four entries stay distinct
    assert warm_start_params(parse_config({**raw, "sampler": {"type": "tpe"}})) == queued[-1:]  # opt-in
    from search.report import build_report
    from search.study import create_study

    study = create_study(config, heartbeat=False)
    assert [t.system_attrs["fixed_params"] for t in study.trials] == queued
    assert study.user_attrs["warm_start"]["portfolio"] is True
    assert "the best of earlier searches on other data sets" in build_report(study).notes["warm_start"]
    assert warm_start_params(parse_config({**raw, "sampler": {"type": "random"}})) == []


def test_baseline_neighbours_each_leave_one_group_to_the_sampler(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    raw = tiny_config(tmp_path, tiny_files)
    raw["sampler"] = {"type": "tpe", "startup": "baseline_neighbours", "n_startup_trials": 8}
    raw["search_space"] = {**raw.get("search_space", {}), "pooling": {"value": "max"}}  # one group fixed
    config = parse_config(raw)
    baseline = baseline_params(config.search_space)
    queued = warm_start_params(config)
    assert queued[0] == baseline and len(queued) == 1 + len(NEIGHBOUR_GROUPS) - 1  # pooling's group skipped
    free = [set(baseline) - set(params) for params in queued[1:]]
    assert free == [set(g) & set(baseline) for g in NEIGHBOUR_GROUPS if g != ("pooling",)]
    assert all(params == {k: baseline[k] for k in params} for params in queued[1:])
    assert len(neighbour_params(baseline, 2)) == 2  # fewer start-up trials, fewer neighbours
    no_startup = parse_config({**raw, "sampler": {**raw["sampler"], "n_startup_trials": 0}})
    assert warm_start_params(no_startup) == [baseline]  # TPE models from the first trial: no neighbours
    assert warm_start_params(parse_config({**raw, "sampler": {"type": "tpe"}})) == [baseline]  # opt-in

    from search.report import build_report
    from search.space import sample_params
    from search.study import create_study

    study = create_study(config, heartbeat=False)
    assert "the baseline trial and its neighbours" in build_report(study).notes["warm_start"]
    for expected_fixed in queued:
        trial = study.ask()
        params = sample_params(trial, config.search_space).to_dict()
        assert {k: params[k] for k in expected_fixed} == expected_fixed
        study.tell(trial, 0.5)
    # The freed groups were drawn: every searched parameter has a value, a strength only with a
    # regularizer (sample_params' rule, through a partially fixed trial).
    assert all(("regularizer_strength" in t.params) == (t.params["regularizer"] != "none") for t in study.trials)


def test_baseline_neighbours_need_the_baseline(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    raw = tiny_config(tmp_path, tiny_files)
    raw["sampler"] = {"type": "tpe", "startup": "baseline_neighbours", "baseline_trial": False}
    with pytest.raises(ConfigError, match="sampler: .*startup: baseline_neighbours needs"):
        parse_config(raw)


def test_a_study_from_weights_fixes_the_source_architecture_and_starts_every_trial_from_it(
        tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    """`warm_start.weights`: a real source bundle, two real trials through the CLI."""
    import optuna

    from data_pipeline import Vectorizer, build_vocabulary, tokenize
    from models.builder import build_model
    from models.bundle import MODEL_FILE, write_sidecar
    from models.params import ModelParams
    from search.cli import main
    from search.report import build_report
    from tests.conftest import write_config

    source = tmp_path / "source"
    source.mkdir()
    lines = tiny_files["train"].read_text(encoding="utf-8").splitlines()
    words = build_vocabulary([tokenize(line.split(" ", 1)[1]) for line in lines[:300]], 400)
    architecture = {"cell": "LSTM", "bidirectional": False, "depth": 1, "embedding_dim": 8, "units": 4,
                    "pooling": "max", "initializer": "he_normal"}
    source_params = ModelParams(max_features=400, sequence_length=24, **architecture)  # type: ignore[arg-type]
    build_model(source_params, 2, mask_zero=True).save(source / MODEL_FILE)
    write_sidecar(source, vectorizer=Vectorizer(words, 24), labels=["1", "2"], params=source_params.to_dict(),
                  extra={"mask_zero": True})
    # No pruner: the second trial's state would depend on the first's luck, not on the transfer.
    raw = tiny_config(tmp_path, tiny_files, n_trials=2, warm_start={"weights": str(source)},
                      pruner={"type": "none"})
    assert main(["run", "--config", str(write_config(tmp_path, raw)), "--no-tracking"]) == 0
    study = optuna.load_study(study_name="tiny", storage=raw["storage"])
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        # LSTM, unidirectional, max pooling: not among the tiny space's choices, the source's all the same.
        assert {k: trial.params[k] for k in architecture} == architecture
        # The vocabulary is the study's own (300 or 500 words of all 600 lines); most are the source's.
        vocabulary = trial.user_attrs["vocab_size"]
        assert 0.5 * vocabulary < trial.user_attrs["transferred_words"] < vocabulary
        assert trial.user_attrs["transferred_head"] is True
    assert study.user_attrs["warm_start"]["weights"] == str(source)
    assert str(source) in build_report(study).notes["warm_start_weights"]


def test_a_study_from_a_registered_champion_pulls_it_once_and_records_its_version(
        tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    """`warm_start.weights: models:/NAME@ALIAS`: a real study registers its champion, a second
    study on the same tracking store starts from it."""
    import optuna
    from mlflow import MlflowClient

    from models.transfer import FIXED
    from search.cli import main
    from tests.conftest import write_config

    first = tiny_config(tmp_path, tiny_files, n_trials=2, pruner={"type": "none"})
    assert main(["run", "--config", str(write_config(tmp_path, first))]) == 0
    champion = MlflowClient(first["tracking"]["uri"]).get_model_version_by_alias("tiny", "champion")
    best = optuna.load_study(study_name="tiny", storage=first["storage"]).best_trial

    second = {**first, "study_name": "tiny_next", "n_trials": 1,
              "warm_start": {"weights": "models:/tiny@champion"}}
    path = write_config(tmp_path, second, name="next.yaml")
    assert main(["run", "--config", str(path)]) == 0
    study = optuna.load_study(study_name="tiny_next", storage=second["storage"])
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert {k: trial.params[k] for k in FIXED} == {k: best.params[k] for k in FIXED}
    assert trial.user_attrs["transferred_words"] > 0 and trial.user_attrs["transferred_head"] is True
    # The study records what the alias meant when it started, not the local copy.
    assert study.user_attrs["warm_start"]["weights"] == (
        f"models:/tiny@champion (version {champion.version}, run {champion.run_id})")
    # One local copy per version, next to the data cache, reused by the next run.
    copies = sorted(p.name for p in (tmp_path / "sources").iterdir())
    assert copies == [f"tiny-v{champion.version}"]
    assert main(["init", "--config", str(write_config(tmp_path, {**second, "study_name": "tiny_third"},
                                                       name="third.yaml"))]) == 0
    assert sorted(p.name for p in (tmp_path / "sources").iterdir()) == copies
