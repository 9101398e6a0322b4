"""Typed, frozen run configuration.

A run is described by four sections (``data``, ``eval``, ``train``, ``model``). Values come from
the defaults below, then an optional YAML file, then ``key=value`` overrides. A key may be written
``section.key`` or, when the name is unique across sections, plain ``key`` (``epochs=3``).
Unknown keys and values of the wrong type are errors that list what is valid; a setting that
moved is read as its new form (:mod:`deepm3.setting_changes`).

Every numeric setting declares its valid range next to its default (:func:`setting`), and one
generic check (:func:`check_settings`, run by each dataclass's ``__post_init__``) enforces them:
a float must also be finite, an int must fit in int64, and the error names the key.

The ``model`` section is a free mapping here; each model validates its own options against its
own frozen dataclass (see ``deepm3.models``), declared with the same :func:`setting`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deepm3.config_yaml import check_keys, parse_scalar, read_file
from deepm3.errors import ConfigError
from deepm3.setting_changes import ADDED_LATER as ADDED_LATER  # where older code looks for it
from deepm3.setting_changes import MOVED, fill_added_later, read_moved
from deepm3.settings import (
    check_choice,
    check_settings,
    setting,
    shown,
)

# Every enumerated setting and its valid values, checked when a config is built (before any
# data is read). The modules that act on a setting import its choices from here.
DEDUP_RULES = ("none", "first", "last")
KCORE_MODES = ("iterative", "single")
SPLITS = ("leave_one_out", "temporal")
TIE_ORDERS = ("file", "shuffle")
TRAIN_WINDOWS = ("last", "all")
PROTOCOLS = ("full", "sampled")
NEGATIVE_SAMPLING = ("uniform", "popularity")
LOSSES = ("ce", "chunked_ce", "sampled_ce", "shared_ce", "inbatch_ce", "bpr")
BATCHINGS = ("random", "chunked", "length")  # deepm3.train.batching
SAMPLED_LOSSES = ("sampled_ce", "shared_ce", "bpr")  # the losses that draw train.loss_negatives
SAMPLING_ALPHA = 0.5  # loss_sampling_alpha's default, as in GRU4Rec's official CE settings
DEVICES = ("auto", "cpu", "cuda", "mps")
# Validation NDCG@10 selects the model (best checkpoint, early stopping): eval.ks must hold 10.
SELECTION_K = 10
SELECTION_METRIC = f"ndcg@{SELECTION_K}"

SEED_MAX = 2**32 - 1  # numpy and torch accept it, and seed * 100_003 + epoch stays in int64
MAX_NUMBER_TEXT = 100  # characters: a longer value is not a number anyone meant to type


@dataclass(frozen=True)
class DataConfig:
    """How raw interactions become sequences. ``None`` means "the dataset's default"."""

    dataset: str = "ml-1m"
    data_dir: str | None = None  # folder holding the raw files; None -> DEEPM3_DATA_DIR or download
    min_rating: float | None = setting(None)  # implicit feedback: keep ratings >= this (None: all)
    dedup: str = "none"  # repeated (user, item) pairs: none | first | last
    kcore: int | None = setting(None, low=0)  # minimum events per user and per item (0 disables)
    kcore_mode: str = "iterative"  # iterative (until stable) | single (one pass, as in SASRec)
    tie_order: str = "file"  # events sharing a timestamp: file (file order) | shuffle (seeded)
    tie_seed: int = setting(0, low=0, high=SEED_MAX)  # tie_order=shuffle only
    split: str = "leave_one_out"  # leave_one_out | temporal
    # temporal split: shares of the time range for validation and test (their sum < 1)
    temporal_valid: float = setting(0.1, above=0, below=1)
    temporal_test: float = setting(0.1, above=0, below=1)
    max_len: int | None = setting(None, low=1)  # history kept per user (last events); None: default
    train_windows: str = "all"  # all (windows over the whole training history) | last (one)
    window_stride: int | None = setting(None, low=1)  # events between window ends; None -> max_len
    user_col: str = "user_id"  # generic CSV/TSV files: column names
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str | None = None
    sep: str | None = None  # generic files: separator (None: by extension, tab for .tsv/.inter)

    def __post_init__(self) -> None:
        check_choice("data.dedup", self.dedup, DEDUP_RULES)
        check_choice("data.kcore_mode", self.kcore_mode, KCORE_MODES)
        check_choice("data.tie_order", self.tie_order, TIE_ORDERS)
        check_choice("data.split", self.split, SPLITS)
        check_choice("data.train_windows", self.train_windows, TRAIN_WINDOWS)
        check_settings(self, "data")
        if self.temporal_valid + self.temporal_test >= 1:
            raise ConfigError(
                "data.temporal_valid + data.temporal_test must be < 1, got "
                f"{self.temporal_valid:g} + {self.temporal_test:g}"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol; recorded with every result."""

    protocol: str = "full"  # full (rank against every item) | sampled (opt-in)
    exclude_seen: bool = True  # mask items already in the user's history
    num_negatives: int = setting(100, low=1)  # sampled protocol only
    negative_sampling: str = "uniform"  # uniform | popularity
    sample_seed: int = setting(0, low=0, high=SEED_MAX)
    # cut-offs of HR, NDCG and MRR; a run needs SELECTION_K among them (RunConfig checks)
    ks: tuple[int, ...] = setting((5, 10, 20), low=1)
    eval_batch_size: int = setting(512, low=1)  # users scored at once (fewer if max_scores says)
    # scores held at once: users per batch <= max_scores / items (2**22: 16 MB of float32, 1.7x
    # faster than 2**26 on a CPU at 370k items, benchmarks/eval_scale.py; a GPU may prefer more)
    max_scores: int = setting(1 << 22, low=1)
    # 0: every user; N: a fixed-seed random sample of N users (recorded)
    eval_users: int = setting(0, low=0)
    eval_users_seed: int = setting(0, low=0, high=SEED_MAX)

    def __post_init__(self) -> None:
        check_choice("eval.protocol", self.protocol, PROTOCOLS)
        check_choice("eval.negative_sampling", self.negative_sampling, NEGATIVE_SAMPLING)
        check_settings(self, "eval")

    def check_selection(self) -> None:
        """A run selects its model on validation :data:`SELECTION_METRIC`: ``ks`` must hold it."""
        if SELECTION_K not in self.ks:
            raise ConfigError(
                f"eval.ks must include {SELECTION_K}: validation {SELECTION_METRIC} selects the "
                f"model, got {shown(list(self.ks))}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every trainable model."""

    epochs: int = setting(200, low=1)  # upper bound; early stopping ends runs sooner
    batch_size: int = setting(128, low=1)
    # random: batches of batch_size shuffled rows fed at max_len; chunked: the same batches, each
    # computed in chunks of similar length without their padding (the same update); length:
    # batches of rows of similar length, about batch_size rows of the mean length, padding
    # trimmed (deepm3.train.batching)
    batching: str = "random"
    lr: float = setting(1e-3, above=0)
    weight_decay: float = setting(0.0, low=0)
    grad_clip: float = setting(5.0, low=0)  # max gradient norm (0: no clipping)
    loss: str = "ce"  # ce | chunked_ce | sampled_ce | shared_ce | inbatch_ce | bpr
    # negatives per position (shared_ce: per batch); at most the number of items, checked when
    # training starts (deepm3.train.losses.check_negatives)
    loss_negatives: int = setting(100, low=1)
    loss_chunk: int = setting(16384, low=1)  # chunked_ce: items per chunk (memory ~ P x chunk)
    logq: bool = False  # logQ correction of the sampled softmax losses (inbatch_ce: always)
    loss_sampling: str = "uniform"  # negatives: uniform | popularity (deepm3.train.negatives)
    # popularity: Q(j) ~ count_j ** alpha (GRU4Rec's sample_alpha; 0: uniform, 1: the counts)
    loss_sampling_alpha: float = setting(SAMPLING_ALPHA, low=0, high=1)
    # validations without NDCG@10 improvement before stopping: validation NDCG@10 is noisy from
    # epoch to epoch, and patience 3 stopped runs at 0.134 whose twins reached 0.153
    patience: int = setting(10, low=1)
    # epochs trained before patience counts: recurrent models sit near popularity for their
    # first epochs before they learn order, and must not be stopped on that plateau
    min_epochs: int = setting(5, low=0)
    seed: int = setting(0, low=0, high=SEED_MAX)
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # mixed precision on CUDA only
    num_threads: int = setting(0, low=0)  # torch CPU threads (0: leave torch's default)
    # seconds of training; stops after the epoch that crosses it (None: no budget)
    time_budget: float | None = setting(None, above=0)
    eval_every: int = setting(1, low=1)  # validate every this many epochs (patience counts these)
    progress: bool = True  # tqdm progress bars

    def __post_init__(self) -> None:
        check_choice("train.loss", self.loss, LOSSES)
        check_choice("train.batching", self.batching, BATCHINGS)
        check_choice("train.device", self.device, DEVICES)
        check_choice("train.loss_sampling", self.loss_sampling, NEGATIVE_SAMPLING)
        check_settings(self, "train")
        if self.logq and self.loss not in ("sampled_ce", "shared_ce", "inbatch_ce"):
            raise ConfigError(
                f"train.logq corrects the sampled softmax losses (sampled_ce, shared_ce, "
                f"inbatch_ce) only; train.loss={self.loss!r} is exact or pairwise: set logq=false"
            )
        if self.loss_sampling != "uniform" and self.loss not in SAMPLED_LOSSES:
            raise ConfigError(
                f"train.loss_sampling chooses the negatives of {', '.join(SAMPLED_LOSSES)}; "
                f"train.loss={self.loss!r} draws none: set loss_sampling=uniform"
            )
        if self.loss_sampling == "uniform" and self.loss_sampling_alpha != SAMPLING_ALPHA:
            raise ConfigError("train.loss_sampling_alpha acts with loss_sampling=popularity only")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.eval.check_selection()

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": dataclasses.asdict(self.data),
            "eval": dataclasses.asdict(self.eval),
            "train": dataclasses.asdict(self.train),
            "model": dict(self.model),
        }


SECTIONS: dict[str, type] = {"data": DataConfig, "eval": EvalConfig, "train": TrainConfig}


def _number(value: Any, annotation: type, key: str) -> int | float:
    """``value`` (a number, or text from a ``key=value`` override) as ``annotation`` (int or
    float), or a one-line :class:`ConfigError`: never an OverflowError or a huge message."""
    kind = annotation.__name__
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected {kind}, got {shown(value)}")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_TEXT:
            raise ConfigError(f"{key}: expected {kind}, got {shown(text)}")
        try:
            value = int(text) if annotation is int and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected {kind}, got {shown(value)}") from None
    if annotation is float:
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: {shown(value)} is too large for a float") from None
    if isinstance(value, float) and not value.is_integer():  # also refuses inf and nan
        raise ConfigError(f"{key}: expected an integer, got {shown(value)}")
    return int(value)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``key=value`` string) to ``annotation``, or raise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # ks=10: a list of one
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {shown(value)}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {shown(value)}")
    if annotation in (int, float):
        return _number(value, annotation, key)
    if annotation is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {shown(value)}")
        return str(value)
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def build_dataclass(cls: type, values: dict[str, Any], where: str, title: str = "") -> Any:
    """Instantiate frozen dataclass ``cls`` from ``values``; unknown keys are an error.

    Errors name each key ``where.key``; ``title`` (default ``where``) names the whole in the
    unknown-key message (``model (sasrec)``). The dataclass checks its own ranges.
    """
    types_by_name = _field_types(cls)
    unknown = sorted(set(values) - set(types_by_name))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {title or where}"
            # a section's own keys are among the suggestions already; a model's are not
            + did_you_mean(unknown[0], () if cls in SECTIONS.values() else tuple(types_by_name))
            + "; valid keys: "
            + ", ".join(sorted(types_by_name))
        )
    coerced = {k: _coerce(v, types_by_name[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**coerced)


def did_you_mean(key: str, model_keys: tuple[str, ...] = ()) -> str:
    """A hint naming the settings closest to a mistyped ``key`` ("" when nothing is close)."""
    names = {f.name: f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)}
    names.update({name: f"model.{name}" for name in model_keys})
    close = difflib.get_close_matches(key.split(".")[-1], list(names), n=3, cutoff=0.75)
    return f"; did you mean {' or '.join(names[c] for c in close)}?" if close else ""


def config_from_dict(saved: dict, where: str, model_keys: tuple[str, ...] = ()) -> RunConfig:
    """Rebuild a :class:`RunConfig` from its :meth:`RunConfig.to_dict` form, strictly: a key
    that no longer exists is an error (a moved one is read as its new form), and every value is
    checked again; model settings added later are filled for ``model_keys`` only."""
    missing = [s for s in (*SECTIONS, "model") if not isinstance(saved.get(s), dict)]
    if missing:
        raise ConfigError(f"{where}: missing section(s) {', '.join(missing)}")
    saved = read_moved({s: saved[s] for s in (*SECTIONS, "model")}, f"{where}: ")
    saved = fill_added_later(saved, model_keys)
    return RunConfig(
        **{s: build_dataclass(cls, saved[s], f"{where}: {s}") for s, cls in SECTIONS.items()},
        model=dict(saved["model"]),
    )


def _route_override(key: str) -> tuple[str, str]:
    """Find the section of ``key`` (``section.key`` or a name unique across sections)."""
    if "." in key:
        section, name = key.split(".", 1)
        if section not in (*SECTIONS, "model"):
            raise ConfigError(f"unknown section {section!r}; valid: data, eval, train, model")
        return section, name
    owners = [s for s, cls in SECTIONS.items() if key in {f.name for f in fields(cls)}]
    owners += [moved.split(".")[0] for moved in MOVED if moved.split(".")[1] == key]
    if len(owners) > 1:
        raise ConfigError(
            f"key {key!r} is ambiguous; write one of " + ", ".join(f"{s}.{key}" for s in owners)
        )
    if owners:
        return owners[0], key
    # Anything else is a model option; the model validates it and lists valid names.
    return "model", key


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """Build a :class:`RunConfig` from defaults, ``base``, a YAML file, then overrides.

    ``base`` holds per-call defaults (for example a dataset's own ``max_len``) and is applied
    before the file, so that the file and the overrides always win.
    """
    raw: dict[str, dict[str, Any]] = {"data": {}, "eval": {}, "train": {}, "model": {}}
    for section, values in (base or {}).items():
        raw[section].update(values)
    if path is not None:
        path = Path(path)
        for section, values in read_file(path).items():
            if section not in raw:
                raise ConfigError(
                    f"{path}: unknown section {section!r}; valid: data, eval, train, model"
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping")
            check_keys(values, f"{path}: {section}")
            raw[section].update(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {shown(item)} must look like key=value")
        key, text = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"override {shown(item)} has no key")
        section, name = _route_override(key.strip())
        raw[section][name] = parse_scalar(text.strip())
    raw = read_moved(raw)
    return RunConfig(
        data=build_dataclass(DataConfig, raw["data"], "data"),
        eval=build_dataclass(EvalConfig, raw["eval"], "eval"),
        train=build_dataclass(TrainConfig, raw["train"], "train"),
        model=dict(raw["model"]),
    )
