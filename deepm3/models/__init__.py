"""The literal registry of models.

Trainable models share one contract (:mod:`deepm3.models.contract`) and one training loop;
count baselines are fitted from the training events and scored by the same evaluator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from deepm3.config import build_dataclass, did_you_mean
from deepm3.errors import ConfigError
from deepm3.models.baselines import LastItem, Popularity
from deepm3.models.deepm3 import DeepM3, DeepM3Options
from deepm3.models.gru4rec import GRU4Rec, GRU4RecOptions
from deepm3.models.sasrec import SASRec, SASRecOptions
from deepm3.models.timeattn import TimeAttention, TimeAttentionOptions
from deepm3.models.tisasrec import TiSASRec, TiSASRecOptions
from deepm3.settings import RANGE

# name -> (options dataclass, constructor(num_items, options, max_len))
MODELS: dict[str, tuple[type, Callable[..., nn.Module]]] = {
    "deepm3": (DeepM3Options, DeepM3),
    "sasrec": (SASRecOptions, SASRec),
    "tisasrec": (TiSASRecOptions, TiSASRec),
    "gru4rec": (GRU4RecOptions, GRU4Rec),
    "timeattn": (TimeAttentionOptions, TimeAttention),
}
COUNT_BASELINES = {"pop": Popularity, "last_item": LastItem}


def model_names() -> list[str]:
    return [*MODELS, *COUNT_BASELINES]


def check_name(name: str) -> None:
    if name not in model_names():
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(model_names())}")


def model_options(name: str, values: dict[str, Any]) -> Any:
    """Validated, frozen options of model ``name`` (unknown keys list the valid ones)."""
    check_name(name)
    if name in COUNT_BASELINES:
        if values:
            unknown = sorted(values)
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}: {name} takes no model options"
                + did_you_mean(unknown[0])
            )
        return None
    # each options dataclass checks its declared ranges: errors name the key (model.dropout)
    return build_dataclass(MODELS[name][0], values, "model", title=f"model ({name})")


def build_model(name: str, num_items: int, options: Any, max_len: int) -> nn.Module:
    """A fresh ``name`` model for ``num_items`` items and histories of ``max_len`` events."""
    return MODELS[name][1](num_items, options, max_len)


def describe_options(name: str) -> dict[str, Any]:
    if name in COUNT_BASELINES:
        return {}
    return dataclasses.asdict(MODELS[name][0]())


def option_ranges(name: str) -> dict[str, str]:
    """Each numeric option's declared valid range, as text (``>= 1``, ``in [0, 1)``)."""
    if name in COUNT_BASELINES:
        return {}
    return {
        item.name: item.metadata[RANGE].describe()
        for item in dataclasses.fields(MODELS[name][0])
        if RANGE in item.metadata
    }
