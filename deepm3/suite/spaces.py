"""Search spaces, one per trainable model, in one place (Optuna's define-by-run API).

Shared by every model: learning rate (log-uniform 3e-4 .. 1e-2), weight decay (0, 1e-4, 1e-2),
dropout (0 .. 0.5) and width (``hidden_size``). Per model:

* ``gru4rec``: ``num_layers`` 1 or 2.
* ``sasrec`` / ``tisasrec``: ``num_layers`` 1 or 2, ``num_heads`` 1 or 2; TiSASRec also its
  interval clip ``time_span`` (64, 256, 1024 personal units).
* ``deepm3``: the Lipschitz constant ``L`` of the spectral field (log-uniform 0.25 .. 4), Euler
  ``steps`` per gap (1 or 2) and the field's MLP width.

Widths depend on the budget (``widths``) so that a CPU budget searches cheap sizes. Every model
gets the same number of trials; a space's size does not change the budget.
"""

from __future__ import annotations

from typing import Any

import optuna

SEARCHED_MODELS = ("gru4rec", "sasrec", "tisasrec", "deepm3")


def _shared(trial: optuna.Trial, widths: tuple[int, ...]) -> tuple[dict, dict]:
    train = {
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-4, 1e-2]),
    }
    model = {
        "dropout": trial.suggest_float("dropout", 0.0, 0.5, step=0.1),
        "hidden_size": trial.suggest_categorical("hidden_size", list(widths)),
    }
    return train, model


def suggest(model: str, trial: optuna.Trial, widths: tuple[int, ...]) -> dict[str, dict]:
    """Sections ``{"train": {...}, "model": {...}}`` of one trial's settings for ``model``."""
    train, options = _shared(trial, widths)
    if model == "gru4rec":
        options["num_layers"] = trial.suggest_int("num_layers", 1, 2)
    elif model in ("sasrec", "tisasrec"):
        options["num_layers"] = trial.suggest_int("num_layers", 1, 2)
        options["num_heads"] = trial.suggest_categorical("num_heads", [1, 2])
        if model == "tisasrec":
            options["time_span"] = trial.suggest_categorical("time_span", [64, 256, 1024])
    elif model == "deepm3":
        options["lipschitz_constant"] = trial.suggest_float(
            "lipschitz_constant", 0.25, 4.0, log=True
        )
        options["steps"] = trial.suggest_int("steps", 1, 2)
        options["field_width"] = trial.suggest_categorical("field_width", [64, 128])
    else:
        raise ValueError(f"no search space for {model!r}; searched: {', '.join(SEARCHED_MODELS)}")
    return {"train": train, "model": options}


def sections_from_params(model: str, params: dict[str, Any]) -> dict[str, dict]:
    """The sections of a finished trial, rebuilt from its stored parameters."""
    return suggest(model, optuna.trial.FixedTrial(params), (params["hidden_size"],))
