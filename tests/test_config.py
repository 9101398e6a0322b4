import pytest

from deepm3.config import DataConfig, EvalConfig, load_config
from deepm3.errors import ConfigError


def test_defaults_and_overrides_with_types():
    config = load_config(None, ["epochs=3", "data.max_len=50", "exclude_seen=false", "ks=5,10"])
    assert config.train.epochs == 3
    assert config.data.max_len == 50
    assert config.eval.exclude_seen is False
    assert config.eval.ks == (5, 10)
    assert config.data == DataConfig(max_len=50)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: .*max_len"):
        load_config(None, ["data.max_lenn=3"])


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        load_config(None, ["epochs=three"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(None, ["epochs=2.5"])


def test_bare_keys_outside_sections_go_to_the_model():
    assert load_config(None, ["hidden_size=64"]).model == {"hidden_size": 64}


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n  epochs: 7\neval:\n  protocol: sampled\n")
    config = load_config(path, ["epochs=2"])
    assert (config.train.lr, config.train.epochs, config.eval.protocol) == (0.01, 2, "sampled")
    assert config.eval == EvalConfig(protocol="sampled")
    path.write_text("trainn:\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(path)


def test_configs_are_frozen():
    config = load_config()
    with pytest.raises(AttributeError):
        config.train.epochs = 1


def test_override_text_that_yaml_reads_as_a_mapping_stays_a_string():
    assert load_config(None, ["sep=::"]).data.sep == "::"


def test_every_shipped_config_file_is_valid_for_its_model():
    from pathlib import Path

    from deepm3.models import model_options

    files = sorted((Path(__file__).parent.parent / "configs").glob("*/*.yaml"))
    assert len(files) >= 18
    for path in files:
        config = load_config(path)
        model_options(path.stem, config.model)  # raises on an unknown or invalid option
