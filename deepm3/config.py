"""Typed, frozen run configuration.

A run is described by four sections (``data``, ``eval``, ``train``, ``model``). Values come from
the defaults below, then an optional YAML file, then ``key=value`` overrides. A key may be written
``section.key`` or, when the name is unique across sections, plain ``key`` (``epochs=3``).
Unknown keys and values of the wrong type are errors that list what is valid.

The ``model`` section is a free mapping here; each model validates its own options against its
own frozen dataclass (see ``deepm3.models``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from deepm3.errors import ConfigError

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
DEVICES = ("auto", "cpu", "cuda", "mps")


def check_choice(where: str, value: object, valid: tuple) -> None:
    """Raise a :class:`ConfigError` naming the valid choices unless ``value`` is one of them."""
    if value not in valid:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, valid))}, got {value!r}")


def _check_ranges(where: str, values: dict[str, tuple[object, float, bool]]) -> None:
    """Each entry ``name: (value, bound, strict)`` must satisfy value > bound (strict) or >=."""
    for name, (value, bound, strict) in values.items():
        if value is None:
            continue
        if (value <= bound) if strict else (value < bound):
            relation = ">" if strict else ">="
            raise ConfigError(f"{where}.{name} must be {relation} {bound}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """How raw interactions become sequences. ``None`` means "the dataset's default"."""

    dataset: str = "ml-1m"
    data_dir: str | None = None  # folder holding the raw files; None -> DEEPM3_DATA_DIR or download
    min_rating: float | None = None  # implicit feedback: keep ratings >= this (None keeps all)
    dedup: str = "none"  # repeated (user, item) pairs: none | first | last
    kcore: int | None = None  # minimum events per user and per item (0 disables)
    kcore_mode: str = "iterative"  # iterative (until stable) | single (one pass, as in SASRec)
    tie_order: str = "file"  # events sharing a timestamp: file (file order) | shuffle (seeded)
    tie_seed: int = 0  # tie_order=shuffle only
    split: str = "leave_one_out"  # leave_one_out | temporal
    temporal_valid: float = 0.1  # temporal split: share of the time range for validation
    temporal_test: float = 0.1  # temporal split: share of the time range for test
    max_len: int | None = None  # history kept per user (last events); dataset default if None
    train_windows: str = "all"  # all (windows over the whole training history) | last (one)
    window_stride: int | None = None  # events between window ends; None -> max_len
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
        _check_ranges(
            "data",
            {
                "kcore": (self.kcore, 0, False),
                "max_len": (self.max_len, 1, False),
                "window_stride": (self.window_stride, 1, False),
                "temporal_valid": (self.temporal_valid, 0, True),
                "temporal_test": (self.temporal_test, 0, True),
            },
        )
        if self.temporal_valid + self.temporal_test >= 1:
            raise ConfigError("data.temporal_valid + data.temporal_test must be < 1")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol; recorded with every result."""

    protocol: str = "full"  # full (rank against every item) | sampled (opt-in)
    exclude_seen: bool = True  # mask items already in the user's history
    num_negatives: int = 100  # sampled protocol only
    negative_sampling: str = "uniform"  # uniform | popularity
    sample_seed: int = 0
    ks: tuple[int, ...] = (5, 10, 20)
    eval_batch_size: int = 512  # users scored at once (fewer when max_scores requires)
    # scores held at once: users per batch <= max_scores / items (2**22: 16 MB of float32, 1.7x
    # faster than 2**26 on a CPU at 370k items, benchmarks/eval_scale.py; a GPU may prefer more)
    max_scores: int = 1 << 22
    eval_users: int = 0  # 0: every user; N: a fixed-seed random sample of N users (recorded)
    eval_users_seed: int = 0

    def __post_init__(self) -> None:
        check_choice("eval.protocol", self.protocol, PROTOCOLS)
        check_choice("eval.negative_sampling", self.negative_sampling, NEGATIVE_SAMPLING)
        _check_ranges(
            "eval",
            {
                "num_negatives": (self.num_negatives, 1, False),
                "eval_batch_size": (self.eval_batch_size, 1, False),
                "max_scores": (self.max_scores, 1, False),
                "eval_users": (self.eval_users, 0, False),
                "eval_users_seed": (self.eval_users_seed, 0, False),
                **{f"ks[{i}]": (k, 1, False) for i, k in enumerate(self.ks)},
            },
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every trainable model."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    loss: str = "ce"  # ce | chunked_ce | sampled_ce | shared_ce | inbatch_ce | bpr
    loss_negatives: int = 100  # negatives per position (shared_ce: per batch)
    loss_chunk: int = 16384  # chunked_ce: items per chunk (memory ~ positions x loss_chunk)
    logq: bool = False  # logQ correction of the sampled softmax losses (inbatch_ce: always)
    patience: int = 5  # validations without NDCG@10 improvement before stopping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # mixed precision on CUDA only
    num_threads: int = 0  # torch CPU threads (0: leave torch's default)
    time_budget: float | None = None  # seconds of training; stops after the epoch that crosses it
    eval_every: int = 1  # validate every this many epochs (early stopping counts validations)
    progress: bool = True  # tqdm progress bars

    def __post_init__(self) -> None:
        check_choice("train.loss", self.loss, LOSSES)
        check_choice("train.device", self.device, DEVICES)
        if self.logq and self.loss not in ("sampled_ce", "shared_ce", "inbatch_ce"):
            raise ConfigError(
                f"train.logq corrects the sampled softmax losses (sampled_ce, shared_ce, "
                f"inbatch_ce) only; train.loss={self.loss!r} is exact or pairwise: set logq=false"
            )
        _check_ranges(
            "train",
            {
                "epochs": (self.epochs, 1, False),
                "batch_size": (self.batch_size, 1, False),
                "lr": (self.lr, 0, True),
                "weight_decay": (self.weight_decay, 0, False),
                "grad_clip": (self.grad_clip, 0, False),
                "loss_negatives": (self.loss_negatives, 1, False),
                "loss_chunk": (self.loss_chunk, 1, False),
                "patience": (self.patience, 1, False),
                "num_threads": (self.num_threads, 0, False),
                "time_budget": (self.time_budget, 0, True),
                "eval_every": (self.eval_every, 1, False),
            },
        )


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": dataclasses.asdict(self.data),
            "eval": dataclasses.asdict(self.eval),
            "train": dataclasses.asdict(self.train),
            "model": dict(self.model),
        }


SECTIONS: dict[str, type] = {"data": DataConfig, "eval": EvalConfig, "train": TrainConfig}


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
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
        try:
            number = annotation(value) if not isinstance(value, str) else annotation(float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and float(value) != number:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate frozen dataclass ``cls`` from ``values``; unknown keys are an error."""
    types_by_name = _field_types(cls)
    unknown = sorted(set(values) - set(types_by_name))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {where}"
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


def config_from_dict(saved: dict[str, Any], where: str) -> RunConfig:
    """Rebuild a :class:`RunConfig` from its :meth:`RunConfig.to_dict` form, strictly: a key
    that no longer exists is an error, and every value is checked again."""
    missing = [s for s in (*SECTIONS, "model") if not isinstance(saved.get(s), dict)]
    if missing:
        raise ConfigError(f"{where}: missing section(s) {', '.join(missing)}")
    return RunConfig(
        **{s: build_dataclass(cls, saved[s], f"{where}: {s}") for s, cls in SECTIONS.items()},
        model=dict(saved["model"]),
    )


def _parse_scalar(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` with YAML rules (numbers, bools, lists)."""
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text
    # Text that YAML reads as a mapping (``sep=::``) was meant as a plain string.
    return text if isinstance(value, dict) else value


def _route_override(key: str) -> tuple[str, str]:
    """Find the section of ``key`` (``section.key`` or a name unique across sections)."""
    if "." in key:
        section, name = key.split(".", 1)
        if section not in (*SECTIONS, "model"):
            raise ConfigError(f"unknown section {section!r}; valid: data, eval, train, model")
        return section, name
    owners = [s for s, cls in SECTIONS.items() if key in {f.name for f in fields(cls)}]
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
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
        for section, values in loaded.items():
            if section not in raw:
                raise ConfigError(
                    f"{path}: unknown section {section!r}; valid: data, eval, train, model"
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping")
            raw[section].update(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        section, name = _route_override(key.strip())
        raw[section][name] = _parse_scalar(text.strip())
    return RunConfig(
        data=build_dataclass(DataConfig, raw["data"], "data"),
        eval=build_dataclass(EvalConfig, raw["eval"], "eval"),
        train=build_dataclass(TrainConfig, raw["train"], "train"),
        model=dict(raw["model"]),
    )
