import json
from pathlib import Path

import pytest

from deepm3.config import DataConfig, EvalConfig, load_config
from deepm3.errors import ConfigError
from deepm3.models import describe_options
from deepm3.setting_changes import ADDED_LATER
from deepm3.train.run import load_plan

COMMITTED_RUNS = sorted(Path(__file__).parent.parent.glob("results/**/config.json"))


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

    import deepm3.defaults
    from deepm3.models import model_options

    shipped = sorted(Path(deepm3.defaults.__file__).parent.glob("*/*.yaml"))
    experiments = sorted((Path(__file__).parent.parent / "configs").glob("*/*.yaml"))
    assert len(shipped) == 16 and len(experiments) >= 2
    for path in shipped + experiments:
        config = load_config(path)
        model_options(path.stem, config.model)  # raises on an unknown or invalid option


def test_shipped_settings_are_the_defaults_and_files_and_overrides_win(tmp_path):
    from deepm3.defaults import run_config

    plain = run_config("ml-100k", "deepm3")
    assert plain.train.batch_size == 32 and plain.data.max_len == 200  # from the shipped file
    assert plain.model["lipschitz"] == "spectral" and plain.data.dataset == "ml-100k"
    assert run_config("ml100k", "sasrec").train.batch_size == 32  # aliases find them too
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  batch_size: 64\n  lr: 0.01\n")
    mine = run_config("ml-100k", "deepm3", path, ["lr=0.002"], data_dir="/data")
    assert (mine.train.batch_size, mine.train.lr, mine.data.data_dir) == (64, 0.002, "/data")
    assert mine.data.max_len == 200  # untouched shipped value
    assert run_config("my.csv", "deepm3").train.batch_size == 128  # no file: dataclass default


def test_every_default_run_survives_the_first_plateau():
    """Shipped defaults and the generic ones a CSV gets: a warm-up before patience counts and
    patience for noisy validation, within an epoch cap that leaves room to converge."""
    from deepm3.defaults import FOLDER, run_config

    shipped = [(d.name, f.stem) for d in FOLDER.iterdir() if d.is_dir() for f in d.glob("*.yaml")]
    assert len(shipped) >= 16
    for dataset, model in [*shipped, ("my.csv", "deepm3"), ("my.csv", "sasrec")]:
        train = run_config(dataset, model).train
        assert train.min_epochs >= 5 and train.patience >= 10, (dataset, model)
        assert train.epochs >= train.min_epochs + 10 * train.patience and not train.time_budget


def test_enumerated_values_and_ranges_fail_when_loaded():
    for override, message in (
        ("protocol=sampeld", "eval.protocol must be one of full, sampled, got 'sampeld'"),
        ("split=random", "data.split must be one of leave_one_out, temporal"),
        ("train_windows=some", "data.train_windows must be one of last, all"),
        ("kcore_mode=twice", "data.kcore_mode must be one of iterative, single"),
        ("negative_sampling=hard", "eval.negative_sampling must be one of uniform, popularity"),
        ("lr=0", "train.lr must be > 0"),
        ("eval_every=0", "train.eval_every must be >= 1"),
        ("window_stride=0", "data.window_stride must be >= 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])


def test_a_mistyped_key_suggests_the_setting_meant():
    with pytest.raises(ConfigError, match="did you mean data.max_len"):
        load_config(None, ["data.max_lenn=3"])


def test_every_committed_run_loads_and_stores_what_it_was_read_from():
    """A committed run's config, read and resolved again, is the stored one (the suites hash this
    form): no key added or changed, beyond settings added later at the value those runs used."""
    assert COMMITTED_RUNS, "no committed run directories found under results/"
    for path in COMMITTED_RUNS:
        stored = json.loads(path.read_text())
        options = describe_options(stored.pop("model_name"))  # a model setting: its models only
        for dotted in ADDED_LATER:
            section, key = dotted.split(".")
            if section != "model" or key in options:
                stored[section].setdefault(key, ADDED_LATER[dotted])
        resolved = json.loads(json.dumps(load_plan(path.parent).config.to_dict()))
        assert resolved == stored, path
