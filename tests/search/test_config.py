from __future__ import annotations

from pathlib import Path

import pytest

from search.config import ConfigError, load_config, parse_config
from tests.conftest import ROOT, tiny_config, write_config


def base() -> dict:
    return {"study_name": "s", "data": {"train_file": "x.txt"}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"colour": 1}, "colour: Extra inputs are not permitted"),
        ({"search_space": {"units": {"low": 64, "high": 8}}}, "search_space.units: low (64) > high (8)"),
        ({"search_space": {"cell": {"choices": []}}}, "search_space.cell: 'choices' is empty"),
        ({"search_space": {"cell": {"choices": ["GRU", "CNN"]}}}, "search_space.cell: 'CNN' is not one of"),
        ({"search_space": {"units": {"choices": [8, "wide"]}}}, "search_space.units: 'wide' is not an int"),
        ({"search_space": {"depth": {"low": 1.5, "high": 3}}}, "search_space.depth: an integer range needs integer"),
        ({"search_space": {"learning_rate": {"low": 0, "high": 1, "log": True}}}, "a log range needs low > 0"),
        ({"search_space": {"hidden": {"choices": [1]}}}, "unknown parameter(s) hidden"),
        ({"search_space": {"units": {"choices": [8], "low": 1, "high": 2}}}, "give exactly one of"),
        ({"training": {"max_epochs": 0}}, "training.max_epochs: Input should be greater than or equal to 1"),
        ({"sampler": {"type": "cmaes"}}, "sampler.type: Input should be 'tpe', 'random' or 'grid'"),
        ({"pruner": {"type": "median", "n_warmup_steps": "x"}}, "pruner.n_warmup_steps"),
        ({"data": {"train_file": "x", "validation_fraction": 1.5}}, "data.validation_fraction"),
        ({"study_name": "bad name!"}, "study_name: String should match pattern"),
        ({"enqueue": [{"cell": "GRU", "width": 3}]}, "enqueue[0].width: unknown parameter"),
        ({"enqueue": [{"optimizer": "sgd"}]}, "enqueue[0].optimizer: 'sgd' is not one of"),
        ({"sampler": {"type": "grid"}}, "grid needs 'choices' or 'value' for depth"),
    ],
)
def test_bad_configs_name_the_key(patch: dict, message: str) -> None:
    data = {**base(), **patch}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "s.yaml")
    text = str(info.value)
    assert text.startswith("config s.yaml: ")
    assert message in text
    assert "\n" not in text


def test_defaults_fill_the_space_and_storage() -> None:
    config = parse_config(base())
    assert config.storage_url == "sqlite:///studies/s.db"
    assert set(config.search_space) == {
        "cell", "bidirectional", "depth", "embedding_dim", "units", "max_features", "sequence_length", "dropout",
        "regularizer", "regularizer_strength", "initializer", "optimizer", "learning_rate", "batch_size", "pooling"}
    assert config.model_name == "s" and config.experiment_name == "s"


def test_overrides_and_yaml_errors(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    path = write_config(tmp_path, tiny_config(tmp_path, tiny_files))
    config = load_config(path, {"training.max_epochs": 7, "data.test_file": "t.txt", "seed": None})
    assert config.training.max_epochs == 7 and config.data.test_file == "t.txt" and config.seed == 7
    bad = tmp_path / "bad.yaml"
    bad.write_text("study_name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_study_configs_are_valid() -> None:
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        config = load_config(path)
        assert config.study_name == path.stem


def test_left_out_sequence_length_and_vocabulary_come_from_the_data(tiny_files: dict) -> None:
    from data_pipeline.stats import corpus_stats

    config = parse_config({"study_name": "s", "data": {"train_file": str(tiny_files["train"])}})
    assert set(config.derived_from_data) == {"sequence_length", "max_features"}
    stats = corpus_stats(config.data)
    derived = config.with_data_aware_space(stats)
    lengths = derived.search_space["sequence_length"].choices
    assert lengths == sorted(lengths) and all(n % 8 == 0 for n in lengths)
    assert lengths[-1] >= stats.token_percentiles["99"] and lengths[0] >= stats.token_percentiles["50"]
    vocab = derived.search_space["max_features"].choices
    assert vocab[-1] == max(1_000, stats.vocabulary_min2 + 2) and vocab == sorted(set(vocab))
    assert derived.derived_from_data == {"sequence_length": lengths, "max_features": vocab}
    given = parse_config({"study_name": "s", "data": {"train_file": str(tiny_files["train"])},
                          "search_space": {"sequence_length": {"value": 50}, "max_features": {"value": 500}}})
    assert given.with_data_aware_space(stats).search_space["sequence_length"].values == [50]  # the config wins


def test_study_name_override_renames_experiment_and_model(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    """Two studies run from one config must not share an experiment or move one champion alias."""
    from search.cli import build_parser, load_study_config

    config = tiny_config(tmp_path, tiny_files)
    config["tracking"] = {"model_name": "tiny", "experiment": "tiny"}
    path = write_config(tmp_path, config)
    args = build_parser().parse_args(["run", "--config", str(path), "--study-name", "other"])
    loaded = load_study_config(args)
    assert (loaded.study_name, loaded.experiment_name, loaded.model_name) == ("other", "other", "other")
    plain = load_study_config(build_parser().parse_args(["run", "--config", str(path)]))
    assert plain.model_name == "tiny"
