"""Model selection: when training stops, which checkpoint is the model, and the test split
touched once.

After each validated epoch :func:`validate` keeps ``best.pt`` when validation NDCG@10 improves
and otherwise counts a bad validation (after the ``min_epochs`` warm-up); :func:`stop_reason`
says why training must not start another epoch (epochs, patience, time budget, pruning). When
training has stopped, :func:`final_results` loads ``best.pt`` and evaluates validation, then the
test split once (never for a search trial).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deepm3.config import SELECTION_METRIC, RunConfig
from deepm3.data.prepare import Prepared
from deepm3.errors import DeepM3Error
from deepm3.eval.evaluator import EvalResult, Scorer, evaluate
from deepm3.train import checkpoint


class TrainingError(DeepM3Error):
    """Training cannot go on (a non-finite loss or gradient); the last good checkpoint is kept."""


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_metric: float = -1.0
    best_epoch: int = 0
    bad_validations: int = 0
    seconds: float = 0.0  # training time so far (resumes add to it)
    nfe: int = 0
    stopped_by: str | None = None  # epochs | patience | time_budget | pruned, once ended


def stop_reason(state: TrainState, train) -> str | None:
    """Why training must not start another epoch, or None to go on."""
    if state.stopped_by == "pruned":
        return "pruned"
    if state.epoch >= train.epochs:
        return "epochs"
    if state.bad_validations >= train.patience:
        return "patience"
    if train.time_budget is not None and state.seconds >= train.time_budget:
        return "time_budget"
    return None


def validate(model, scorer, data, config: RunConfig, device, state: TrainState, out: Path):
    """Validate after an epoch: update the best model and the patience counter -> metrics."""
    model.eval()
    valid = evaluate(scorer, data, "valid", config.eval, device)
    metric = valid.metrics[SELECTION_METRIC]
    if metric > state.best_metric:
        state.best_metric, state.best_epoch, state.bad_validations = metric, state.epoch, 0
        checkpoint.save(
            out / "best.pt",
            {
                "model_name": checkpoint.model_name(model),
                "model": model.state_dict(),
                "epoch": state.epoch,
                "config": config.to_dict(),
            },
        )
    elif state.epoch > config.train.min_epochs:  # patience counts after the warm-up
        state.bad_validations += 1
    return valid.metrics


def final_results(
    model: nn.Module,
    scorer: Scorer,
    data: Prepared,
    config: RunConfig,
    device: torch.device,
    best_path: Path,
    evaluate_test: bool,
) -> tuple[EvalResult, EvalResult | None]:
    """Validation and test results of the best model (``best_path`` loaded into ``model``);
    the test split is evaluated once, and not at all when ``evaluate_test`` is False."""
    if not best_path.exists():
        raise TrainingError("no epoch was validated; raise epochs or time_budget")
    checkpoint.load_model(best_path, model, device)
    model.eval()
    valid = evaluate(scorer, data, "valid", config.eval, device)
    test = None
    if evaluate_test:
        test = evaluate(scorer, data, "test", config.eval, device)  # touched once, from best.pt
    return valid, test
