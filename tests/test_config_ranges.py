"""Every numeric option's declared range (deepm3.config.setting), checked when the config loads.

The range tests are generated from the fields' metadata, so a new numeric field without a
declared range fails ``test_every_numeric_field_declares_a_range`` and every declared bound is
tested from both sides. Bad values through the CLI give exit 2 and one line on stderr.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import write_synthetic_csv

from deepm3.cli import main
from deepm3.config import DataConfig, EvalConfig, TrainConfig, build_dataclass, load_config
from deepm3.data.sequences import evaluation_table
from deepm3.errors import ConfigError, DataError
from deepm3.eval import evaluator
from deepm3.eval.evaluator import EvalResult, evaluate
from deepm3.eval.metrics import MetricError, check_metrics, metrics_from_ranks
from deepm3.models import MODELS
from deepm3.settings import INT64_MAX, RANGE, Range
from deepm3.train.losses import check_negatives, sequence_loss

SECTIONS = [(DataConfig, "data"), (EvalConfig, "eval"), (TrainConfig, "train")]
CLASSES = SECTIONS + [(options, "model") for options, _ in MODELS.values()]


def _numeric_kind(annotation: object) -> type | None:
    """int or float for a numeric field (``int | None``, ``tuple[int, ...]`` included)."""
    for part in (annotation, *typing.get_args(annotation)):
        if part in (int, float):
            return part
        if typing.get_origin(part) is tuple:
            return _numeric_kind(typing.get_args(part)[0])
    return None


def _numeric_fields() -> list[tuple[type, str, dataclasses.Field, type]]:
    found = []
    for cls, section in CLASSES:
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            kind = _numeric_kind(hints[item.name])
            if kind is not None:
                found.append((cls, section, item, kind))
    return found


def _step(value: float, kind: type, up: bool) -> float:
    """The next representable value of ``kind`` above (``up``) or below ``value``."""
    if kind is int:
        return int(value) + (1 if up else -1)
    return math.nextafter(value, math.inf if up else -math.inf)


def _boundary_cases(bounds: Range, kind: type) -> list[tuple[float, float]]:
    """(just outside, just inside) for each declared bound, and the int64 / finite limits."""
    cases = []
    if bounds.low is not None:
        cases.append((_step(bounds.low, kind, up=False), kind(bounds.low)))
    if bounds.above is not None:
        cases.append((kind(bounds.above), _step(bounds.above, kind, up=True)))
    if bounds.high is not None:
        cases.append((_step(bounds.high, kind, up=True), kind(bounds.high)))
    if bounds.below is not None:
        cases.append((kind(bounds.below), _step(bounds.below, kind, up=False)))
    if kind is int and bounds.high is None and bounds.below is None:
        cases.append((INT64_MAX + 1, INT64_MAX))
    if kind is float:
        cases += [(math.inf, None), (-math.inf, None), (math.nan, None)]
    return cases


def _companions(cls: type, name: str, value: float) -> dict[str, float | str]:
    """Other fields set so that a cross-field rule does not hide the field under test."""
    if "num_heads" in {f.name for f in dataclasses.fields(cls)}:
        if name == "hidden_size" and value >= 1:
            return {"num_heads": 1}
        if name == "num_heads" and 1 <= value <= INT64_MAX:
            return {"hidden_size": value}
    if name == "loss_sampling_alpha":  # acts with popularity sampling only
        return {"loss": "shared_ce", "loss_sampling": "popularity"}
    if name in ("temporal_valid", "temporal_test") and value < 1:
        other = "temporal_test" if name == "temporal_valid" else "temporal_valid"
        return {other: math.ulp(0.0)}
    return {}


def _build(cls: type, section: str, name: str, value: float) -> object:
    values = {name: value, **_companions(cls, name, value)}
    is_tuple = typing.get_origin(typing.get_type_hints(cls)[name]) is tuple
    if is_tuple:
        values[name] = (value,)
    return build_dataclass(cls, values, section)


BOUNDARIES = [
    pytest.param(
        cls, section, item.name, outside, inside, id=f"{cls.__name__}.{item.name}={outside}"
    )
    for cls, section, item, kind in _numeric_fields()
    if RANGE in item.metadata
    for outside, inside in _boundary_cases(item.metadata[RANGE], kind)
]


def test_every_numeric_field_declares_a_range():
    missing = [
        f"{cls.__name__}.{item.name}"
        for cls, _, item, _ in _numeric_fields()
        if not isinstance(item.metadata.get(RANGE), Range)
    ]
    assert not missing, f"declare a range with deepm3.config.setting(...): {missing}"
    assert len(BOUNDARIES) > 40  # every class contributes


@pytest.mark.parametrize(("cls", "section", "name", "outside", "inside"), BOUNDARIES)
def test_a_value_just_outside_is_refused_and_the_boundary_inside_accepted(
    cls, section, name, outside, inside
):
    with pytest.raises(ConfigError, match=re.escape(f"{section}.{name}")) as error:
        _build(cls, section, name, outside)
    assert "\n" not in str(error.value) and len(str(error.value)) < 200
    if inside is not None:
        built = _build(cls, section, name, inside)
        value = getattr(built, name)
        assert (value[0] if isinstance(value, tuple) else value) == inside


def _inside(value: float, bounds: Range) -> bool:
    """``value`` against the declared bounds, compared here (not by Range or the dataclass)."""
    return (
        (bounds.low is None or value >= bounds.low)
        and (bounds.high is None or value <= bounds.high)
        and (bounds.above is None or value > bounds.above)
        and (bounds.below is None or value < bounds.below)
    )


@pytest.mark.parametrize(("cls", "section"), CLASSES)
def test_every_default_is_inside_its_range(cls, section):
    defaults = cls()
    outside = [
        f"{cls.__name__}.{item.name}={getattr(defaults, item.name)!r}"
        for item in dataclasses.fields(cls)
        if RANGE in item.metadata and getattr(defaults, item.name) is not None  # None: unset
        for value in np.atleast_1d(getattr(defaults, item.name))
        if not _inside(value, item.metadata[RANGE])
    ]
    assert not outside, f"defaults outside their declared range: {outside}"
    # and the checked way in (a config file or the command line) accepts them unchanged
    assert build_dataclass(cls, dataclasses.asdict(defaults), section) == defaults


@settings(max_examples=50, deadline=None)
@given(st.floats())
def test_lr_is_accepted_exactly_when_finite_and_positive(lr):
    if math.isfinite(lr) and lr > 0:
        assert load_config(None, [f"lr={lr!r}"]).train.lr == lr
    else:
        with pytest.raises(ConfigError, match=r"^train\.lr"):
            build_dataclass(TrainConfig, {"lr": lr}, "train")


@settings(max_examples=50, deadline=None)
@given(st.floats())
def test_dropout_of_every_model_is_in_zero_to_one(dropout):
    for options, _ in MODELS.values():
        if math.isfinite(dropout) and 0 <= dropout < 1:
            assert build_dataclass(options, {"dropout": dropout}, "model").dropout == dropout
        else:
            with pytest.raises(ConfigError, match=r"^model\.dropout"):
                build_dataclass(options, {"dropout": dropout}, "model")


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_batch_size_is_an_int64_of_at_least_one(size):
    if 1 <= size <= INT64_MAX:
        assert load_config(None, [f"batch_size={size}"]).train.batch_size == size
    else:
        with pytest.raises(ConfigError, match=r"^train\.batch_size"):
            load_config(None, [f"batch_size={size}"])


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.text(max_size=300), st.from_regex(r"[-+]?[0-9.eE]{1,400}", fullmatch=True)))
def test_any_text_for_a_number_gives_a_value_or_one_short_line(text):
    for key in ("epochs", "lr", "kcore", "hidden_size"):
        try:
            load_config(None, [f"{key}={text}"])
        except ConfigError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 200, str(exc)


def test_huge_and_non_finite_numbers_are_one_line_errors():
    for override, message in (
        ("epochs=" + "1" * 5000, "train.epochs: expected int, got '1111"),
        ("epochs=" + "1" * 200, "train.epochs must fit in a 64-bit integer"),
        ("lr=1" + "0" * 400, "train.lr: an integer of 401 digits is too large for a float"),
        ("epochs=.inf", "train.epochs: expected an integer, got inf"),
        ("kcore=.inf", "data.kcore: expected an integer, got inf"),
        ("lr=.nan", "train.lr must be a finite number, got nan"),
        ("lr=.inf", "train.lr must be a finite number, got inf"),
    ):
        with pytest.raises(ConfigError) as error:
            load_config(None, [override])
        assert str(error.value).startswith(message) and len(str(error.value)) < 120


def test_ks_must_hold_the_selection_cutoff_and_may_be_one_number():
    with pytest.raises(ConfigError, match=r"eval\.ks must include 10: validation ndcg@10"):
        load_config(None, ["ks=[5]"])
    assert load_config(None, ["ks=10"]).eval.ks == (10,)
    assert EvalConfig(ks=(1,)).ks == (1,)  # a library evaluation without model selection


def test_attention_heads_must_divide_the_width():
    for name in ("sasrec", "tisasrec", "timeattn"):
        message = r"model\.hidden_size \(128\) must be a multiple of model\.num_heads \(3\)"
        with pytest.raises(ConfigError, match=message):
            build_dataclass(MODELS[name][0], {"num_heads": 3}, "model")


def test_config_file_that_is_not_utf8_or_unreadable_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  lr: 0.01  # d\xe9faut\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9"):
        load_config(path)
    readable = tmp_path / "ok.yaml"
    readable.write_text("train:\n  lr: 0.01\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError, match=r"ok.yaml: cannot read the config file \(Permission"):
        load_config(readable)


# --------------------------------------------------------------------------------------------
# Through the CLI: exit 2, one line on stderr, no traceback.


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ranges")
    return write_synthetic_csv(folder / "events.csv", num_users=20, num_items=30)


CLI_CASES = [
    ("deepm3", ["lr=-1"], "train.lr must be > 0, got -1.0"),
    ("deepm3", ["batch_size=0"], "train.batch_size must be >= 1"),
    ("deepm3", ["batch_size=-1"], "train.batch_size must be >= 1"),
    ("deepm3", ["eval_every=0"], "train.eval_every must be >= 1"),
    ("deepm3", ["ks=[5]"], "eval.ks must include 10"),
    ("deepm3", ["max_len=0"], "data.max_len must be >= 1"),
    ("deepm3", ["dropout=2"], "model.dropout must be in [0, 1), got 2"),
    ("deepm3", ["seed=-1"], "train.seed must be in [0, 4294967295]"),
    ("sasrec", ["num_heads=3"], "model.hidden_size (128) must be a multiple of model.num_heads"),
    ("deepm3", ["steps=-1"], "model.steps must be >= 1"),
    ("deepm3", ["field_width=0"], "model.field_width must be >= 1"),
    ("deepm3", ["lipschitz_constant=-1"], "model.lipschitz_constant must be > 0"),
    ("sasrec", ["num_layers=-1"], "model.num_layers must be >= 1"),
    ("sasrec", ["loss=sampled_ce", "loss_negatives=0"], "train.loss_negatives must be >= 1"),
    ("deepm3", ["patience=0"], "train.patience must be >= 1"),
    ("deepm3", ["epochs=.inf"], "train.epochs: expected an integer, got inf"),
    ("deepm3", ["kcore=.inf"], "data.kcore: expected an integer, got inf"),
    ("deepm3", ["lr=.inf"], "train.lr must be a finite number"),
    ("deepm3", ["lr=.nan"], "train.lr must be a finite number"),
    ("deepm3", ["epochs=" + "1" * 5000], "train.epochs: expected int"),
    ("deepm3", ["eval_batch_size=-1"], "eval.eval_batch_size must be >= 1"),
    ("tisasrec", ["time_span=0"], "model.time_span must be >= 1"),
    ("gru4rec", ["dropout=1"], "model.dropout must be in [0, 1)"),
    # refused when training starts: more negatives than the data set has items
    ("sasrec", ["loss=sampled_ce", f"loss_negatives={10**9}"], "exceeds the 30 items"),
    ("sasrec", ["loss=sampled_ce", "loss_negatives=31"], "use at most 30"),
]


@pytest.mark.parametrize(
    ("model", "overrides", "message"), CLI_CASES, ids=[" ".join(c[1])[:40] for c in CLI_CASES]
)
def test_cli_refuses_bad_values_with_one_line(csv, tmp_path, capsys, model, overrides, message):
    args = ["train", "--dataset", str(csv), "--model", model, "--out", str(tmp_path / "run")]
    code = main([*args, "epochs=1", "progress=false", *overrides])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and len(lines) == 1, captured.err
    assert lines[0].startswith("deepm3: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in captured.err and len(lines[0]) < 300


def test_cli_config_file_not_utf8(csv, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"train:\n  epochs: 1\n  # \xff\xfe\n")
    code = main(["train", "--dataset", str(csv), "--model", "pop", "--config", str(config)])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1 and "bad.yaml: not UTF-8 text" in lines[0]


# --------------------------------------------------------------------------------------------
# Metrics and negatives


def test_no_metric_outside_zero_one_is_ever_returned():
    for bad in (math.inf, -math.inf, math.nan, 1.5, -0.1):
        with pytest.raises(MetricError, match=r"^metrics: ndcg@10 = .* is not in \[0, 1\]"):
            check_metrics({"hr@10": 0.5, "ndcg@10": bad})
    assert check_metrics({"hr@10": 1.0, "mrr@10": 0.0}) == {"hr@10": 1.0, "mrr@10": 0.0}
    with pytest.raises(MetricError, match="1-based"):
        metrics_from_ranks(torch.tensor([1, 0, 3]))  # a user never ranked
    with pytest.raises(MetricError, match="^no ranks to average: no user was evaluated$"):
        metrics_from_ranks(torch.tensor([], dtype=torch.int64))
    # the message names the evaluation that produced the bad number
    with pytest.raises(MetricError, match="^test metrics: hr@10 = inf"):
        EvalResult({"hr@10": math.inf}, {}, None, {"role": "test"})
    with pytest.raises(MetricError, match="^valid untied metrics: hr@10 = nan"):
        EvalResult({"hr@10": 0.5}, {"hr@10": math.nan}, None, {"role": "valid"})
    with pytest.raises(MetricError, match="^evaluation metrics: mrr@5 = -1"):
        EvalResult({"mrr@5": -1}, {}, None, {})


def test_evaluator_refuses_unranked_users_and_an_empty_split(synthetic, monkeypatch):
    def scorer(batch):
        return torch.rand(batch.items.shape[0], synthetic.num_items + 1)

    empty = evaluation_table(synthetic, "test").take(np.arange(0))
    with pytest.raises(
        DataError,
        match=r"^no user can be evaluated on the test split: no user has a test target "
        r"\(too few events per user after filtering\?\)$",
    ):
        evaluate(scorer, synthetic, "test", EvalConfig(), table=empty)
    # a bug that leaves ranks unfilled (as eval_batch_size=-1 once did) is caught, not recorded
    monkeypatch.setattr(evaluator, "pessimistic_ranks", lambda s, t: torch.zeros_like(t))
    with pytest.raises(MetricError, match="1-based"):
        evaluate(scorer, synthetic, "test", EvalConfig())


def test_negatives_beyond_the_items_are_refused_with_the_item_count():
    for loss in ("sampled_ce", "shared_ce", "bpr"):
        with pytest.raises(ConfigError, match=r"loss_negatives=1000000 exceeds the 3,416 items"):
            check_negatives(loss, 1_000_000, 3416)
        check_negatives(loss, 3416, 3416)
    check_negatives("ce", 1_000_000, 3416)  # exact losses draw nothing
    states, items = torch.zeros(1, 4096, 64), torch.zeros(41, 64)
    targets = torch.ones(1, 4096, dtype=torch.int64)
    with pytest.raises(ConfigError, match=r"needs about .* GiB.*the data set has 40 items"):
        sequence_loss("sampled_ce", states, items, targets, 10**12)


# --------------------------------------------------------------------------------------------
# Keys that are not names: one ConfigError naming the file and the key, never a traceback


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("data:\n  ~: 1\n", "data: key null (~)"),
        ("model:\n  1: 2\n", "model: key 1"),
        ("train:\n  epochs: 1\n  null: 3\n", "train: key null (~)"),
        ("eval:\n  '': 5\n", "eval: key ''"),
    ],
)
def test_cli_config_key_that_is_not_a_name(csv, tmp_path, capsys, text, named):
    config = tmp_path / "keys.yaml"
    config.write_text(text)
    args = ["train", "--dataset", str(csv), "--model", "sasrec", "--out", str(tmp_path / "run")]
    code = main([*args, "--config", str(config)])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and len(lines) == 1, captured.err
    assert lines[0] == (
        f"deepm3: error: {config}: {named} is not a setting name (keys are names such as epochs)"
    )
    assert not (tmp_path / "run" / "config.json").exists()


@settings(max_examples=50, deadline=None)
@given(
    section=st.sampled_from(["data", "eval", "train", "model"]),
    key=st.none() | st.integers() | st.floats() | st.booleans() | st.just(" "),
)
def test_any_yaml_key_that_is_not_a_name_is_a_config_error_naming_the_file(section, key):
    folder = Path(tempfile.mkdtemp())
    path = folder / "generated.yaml"
    path.write_text(yaml.safe_dump({section: {key: 1}}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {section}: key "):
        load_config(path)


@pytest.mark.parametrize("override", ["=1", " =1", "=", " = x"])
def test_cli_override_without_a_key(csv, tmp_path, capsys, override):
    args = ["train", "--dataset", str(csv), "--model", "sasrec", "--out", str(tmp_path / "run")]
    code = main([*args, override])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and lines == [f"deepm3: error: override {override!r} has no key"]
