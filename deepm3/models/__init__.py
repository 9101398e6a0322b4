"""The literal registry of models.

Count baselines are fitted from the training events; trainable models (added with the
models issue) map batches to hidden states and share the training loop.
"""

from __future__ import annotations

from deepm3.errors import ConfigError
from deepm3.models.baselines import LastItem, Popularity

COUNT_BASELINES = {"pop": Popularity, "last_item": LastItem}


def model_names() -> list[str]:
    return [*COUNT_BASELINES]


def check_name(name: str) -> None:
    if name not in model_names():
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(model_names())}")
