"""Search spaces, one per trainable model, in one place (Optuna's define-by-run API).

Shared by every model: learning rate (log-uniform 3e-4 .. 1e-2), weight decay (0, 1e-4, 1e-2),
dropout (0 .. 0.5) and width (``hidden_size``). Per model:

* ``gru4rec``: ``num_layers`` 1 or 2.
* ``sasrec`` / ``tisasrec``: ``num_layers`` 1 or 2, ``num_heads`` 1 or 2; TiSASRec also its
  interval clip ``time_span`` (64, 256, 1024 personal units).
* ``timeattn``: as SASRec (``num_layers``, ``num_heads``); with its flow (``flow=decay``) also
  the flow's rate bound ``lipschitz_constant`` (log-uniform 0.25 .. 4, as DeepM3's).
* ``deepm3``: the Lipschitz constant ``L`` of the spectral field (log-uniform 0.25 .. 4), solver
  ``steps`` per gap (1 or 2) and the field's MLP width; with the closed-form flow
  (``ode=decay``) only ``L``, the rates' bound (it has no solver and no field); without the flow
  (``ode=none``, the GRU twin) none of these three, which it would not read.

A row's fixed options (``fixed``, e.g. ``{"ode": "decay"}``) say which flow a space searches.

Widths depend on the budget (``widths``) so that a CPU budget searches cheap sizes. Every model
gets the same number of trials; a space's size does not change the budget.

Besides the spaces: their middle (:func:`middle`), the first trials of a study spread over the
learning rate (:func:`spread`), and which of a best trial's settings sit at an end of their
range (:func:`edges`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna

from deepm3.models.deepm3 import DeepM3Options
from deepm3.models.timeattn import TimeAttentionOptions

SEARCHED_MODELS = ("gru4rec", "sasrec", "tisasrec", "deepm3", "timeattn")
LR_RANGE = (3e-4, 1e-2)  # log-uniform


def _shared(trial: optuna.Trial, widths: tuple[int, ...]) -> tuple[dict, dict]:
    train = {
        "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
        "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-4, 1e-2]),
    }
    model = {
        "dropout": trial.suggest_float("dropout", 0.0, 0.5, step=0.1),
        "hidden_size": trial.suggest_categorical("hidden_size", list(widths)),
    }
    return train, model


def _lipschitz(trial: optuna.Trial) -> float:
    """A flow's Lipschitz constant (DeepM3's field, or a decay flow's rate bound)."""
    return trial.suggest_float("lipschitz_constant", 0.25, 4.0, log=True)


def suggest(
    model: str,
    trial: optuna.Trial,
    widths: tuple[int, ...],
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, dict]:
    """Sections ``{"train": {...}, "model": {...}}`` of one trial's settings for ``model``
    whose row fixes the model options ``fixed`` (its flow decides what is searched)."""
    fixed = fixed or {}
    train, options = _shared(trial, widths)
    if model == "gru4rec":
        options["num_layers"] = trial.suggest_int("num_layers", 1, 2)
    elif model in ("sasrec", "tisasrec", "timeattn"):
        options["num_layers"] = trial.suggest_int("num_layers", 1, 2)
        options["num_heads"] = trial.suggest_categorical("num_heads", [1, 2])
        if model == "tisasrec":
            options["time_span"] = trial.suggest_categorical("time_span", [64, 256, 1024])
        if model == "timeattn" and fixed.get("flow", TimeAttentionOptions.flow) != "none":
            options["lipschitz_constant"] = _lipschitz(trial)
    elif model == "deepm3":
        flow = fixed.get("ode", DeepM3Options.ode)
        if flow != "none":
            options["lipschitz_constant"] = _lipschitz(trial)
        if flow == "ode":  # the solved field: its steps and width (decay has neither)
            options["steps"] = trial.suggest_int("steps", 1, 2)
            options["field_width"] = trial.suggest_categorical("field_width", [64, 128])
    else:
        raise ValueError(f"no search space for {model!r}; searched: {', '.join(SEARCHED_MODELS)}")
    return {"train": train, "model": options}


def sections_from_params(
    model: str, params: dict[str, Any], fixed: Mapping[str, Any] | None = None
) -> dict[str, dict]:
    """The sections of a finished trial, rebuilt from its stored parameters."""
    return suggest(model, optuna.trial.FixedTrial(params), (params["hidden_size"],), fixed)


class _MiddleTrial:
    """Answers every suggestion of a space with the middle of its range: the geometric middle
    of a log range, the arithmetic middle of a continuous one, the median of a grid or a list of
    choices (the upper one of an even count). Records the answers in ``params``."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def _pick(self, name: str, value: Any) -> Any:
        self.params[name] = value
        return value

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        if log:
            return self._pick(name, math.sqrt(low * high))
        if step is not None:
            count = round((high - low) / step) + 1
            return self._pick(name, round(low + (count // 2) * step, 10))
        return self._pick(name, (low + high) / 2)

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._pick(name, low + (high - low + 1) // 2)

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return self._pick(name, choices[len(choices) // 2])


def middle(
    model: str, widths: tuple[int, ...], fixed: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters of the middle of ``model``'s space (rules in :class:`_MiddleTrial`)."""
    trial = _MiddleTrial()
    suggest(model, trial, widths, fixed)  # type: ignore[arg-type]  # a duck-typed trial
    return trial.params


def spread(
    model: str, widths: tuple[int, ...], count: int, fixed: Mapping[str, Any] | None = None
) -> list[dict]:
    """The parameters of a study's first ``count`` trials: learning rates spread log-evenly over
    :data:`LR_RANGE` (the centres of ``count`` equal log-bins, so the lowest and highest sit a
    factor ``(high / low) ** (1 / (2 count))`` inside the ends), everything else at the space's
    middle. The same learning rates for every model."""
    low, high = LR_RANGE
    centre = middle(model, widths, fixed)
    return [
        {**centre, "lr": low * (high / low) ** ((index + 0.5) / count)} for index in range(count)
    ]


def edges(params: dict[str, Any], distributions: dict[str, Any], tolerance: float = 0.05) -> dict:
    """``{name: "low" | "high"}`` for each searched numeric parameter at an end of its range.

    ``distributions`` are Optuna's (``FrozenTrial.distributions``). A number is at an end when
    it lies within ``tolerance`` of the range's length (on the log scale for a log range) of
    its low or high bound; a categorical choice when it is the smallest or largest of numeric
    choices (an ordered choice such as a width). Choices that are not all numbers have no
    order, and a range with a single value was not searched: neither is ever at an edge.
    """
    found = {}
    for name, value in params.items():
        distribution = distributions[name]
        choices = getattr(distribution, "choices", None)
        if choices is not None:
            numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
            if not numeric or len(set(choices)) < 2:
                continue
            low, high = min(choices), max(choices)
            position = 0.0 if value == low else 1.0 if value == high else 0.5
        else:
            low, high = distribution.low, distribution.high
            if low == high:
                continue
            if getattr(distribution, "log", False):
                position = math.log(value / low) / math.log(high / low)
            else:
                position = (value - low) / (high - low)
        if position <= tolerance:
            found[name] = "low"
        elif position >= 1 - tolerance:
            found[name] = "high"
    return found
