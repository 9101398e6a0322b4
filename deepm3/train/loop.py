"""The one training loop, for every trainable model.

Per epoch: shuffle training users (seeded by ``(seed, epoch)``), minimise the configured loss at
every position, clip gradients, step AdamW; then validate (full ranking, NDCG@10 selects the
model), write a log line and an atomic ``last.pt``; ``best.pt`` keeps the best model. Because
every epoch re-seeds its own randomness, a run resumed from ``last.pt`` (after any interruption,
``kill -9`` included) repeats exactly what the uninterrupted run would have done (on CPU).
A step whose loss or gradients are not finite stops training before the optimizer moves, so no
checkpoint is ever written from a poisoned step. The test split is evaluated once, from
``best.pt``, after training.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deepm3.config import RunConfig
from deepm3.data.prepare import Prepared
from deepm3.data.sequences import Batch, training_table
from deepm3.errors import DeepM3Error
from deepm3.eval.evaluator import EvalResult, evaluate
from deepm3.models.contract import item_scores, run_model
from deepm3.train import checkpoint
from deepm3.train.losses import sequence_loss

SELECTION_METRIC = "ndcg@10"


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


def model_scorer(model: nn.Module):
    """Scores for evaluation: the state at the last position against all items."""

    def score(batch: Batch) -> torch.Tensor:
        states, _ = run_model(model, batch)
        return item_scores(states[:, -1].float(), model.item_embedding)

    return score


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _run_epoch(model, optimizer, table, config: RunConfig, epoch: int, device) -> tuple[float, int]:
    """One pass over the training users; returns mean loss and function evaluations."""
    train = config.train
    torch.manual_seed(train.seed * 100_003 + epoch)  # dropout: same draws after a resume
    rng = np.random.default_rng([train.seed, epoch])
    negatives = torch.Generator().manual_seed(train.seed * 7919 + epoch)
    model.train()
    total, count, evaluations = 0.0, 0, 0
    batches = table.batches(train.batch_size, shuffle=True, generator=rng)
    steps = math.ceil(len(table) / train.batch_size)
    bar = tqdm(batches, total=steps, desc=f"epoch {epoch}", leave=False, disable=not train.progress)
    for number, batch in enumerate(bar):
        batch = batch.to(device)
        with _autocast(device, train.amp):
            states, aux = run_model(model, batch)
            loss = sequence_loss(
                train.loss,
                states,
                model.item_embedding.weight,
                batch.targets,
                train.loss_negatives,
                negatives,
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The gradient norm is needed anyway for clipping; max_norm=inf measures without clipping.
        norm = nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip or float("inf"))
        # one device sync for both checks (the loss is read back below anyway)
        if not bool(torch.isfinite(torch.stack([loss.detach().float(), norm.float()])).all()):
            what = "loss" if not torch.isfinite(loss) else "gradient norm"
            value = (loss if what == "loss" else norm).item()
            raise TrainingError(
                f"the {what} became {value} at epoch {epoch}, batch {number + 1}; training "
                "stopped before the update, and the last good checkpoint (last.pt, best.pt) is "
                "kept. Try a lower lr, stronger gradient clipping or a Lipschitz-constrained field."
            )
        optimizer.step()
        total += loss.item()
        count += 1
        evaluations += int(aux.get("nfe", 0))
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1), evaluations


def _checkpoint_payload(model, optimizer, state: TrainState, config: RunConfig) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": state.__dict__.copy(),
        "config": config.to_dict(),
    }


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, epochs_kept: int) -> None:
    """After a resume, drop log lines of epochs that the checkpoint does not contain."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs_kept]
    path.write_text("".join(line + "\n" for line in kept))


def _summary(record: dict, state: TrainState) -> str:
    text = f"epoch {record['epoch']}: loss {record['loss']:.4f}, {record['seconds']:.1f} s"
    if "valid" in record:
        text += (
            f", valid {SELECTION_METRIC} {record['valid'][SELECTION_METRIC]:.4f} "
            f"(best {state.best_metric:.4f} at epoch {state.best_epoch})"
        )
    return text


def _stop_reason(state: TrainState, train) -> str | None:
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


def _validate(model, scorer, data, config: RunConfig, device, state: TrainState, out: Path):
    """Validate after an epoch: update the best model and the patience counter -> metrics."""
    model.eval()
    valid = evaluate(scorer, data, "valid", config.eval, device)
    metric = valid.metrics[SELECTION_METRIC]
    if metric > state.best_metric:
        state.best_metric, state.best_epoch, state.bad_validations = metric, state.epoch, 0
        checkpoint.save(
            out / "best.pt",
            {"model": model.state_dict(), "epoch": state.epoch, "config": config.to_dict()},
        )
    else:
        state.bad_validations += 1
    return valid.metrics


def fit(
    model: nn.Module,
    data: Prepared,
    config: RunConfig,
    out: Path,
    device: torch.device,
    resume: bool = False,
    on_validation: Callable[[int, float], bool] | None = None,
    evaluate_test: bool = True,
) -> tuple[TrainState, EvalResult, EvalResult | None]:
    """Train with early stopping on validation; return the state and best valid/test results.

    ``on_validation(epoch, valid_ndcg10)`` is called after each validation; returning True stops
    training with ``stopped_by="pruned"`` (hyper-parameter search). ``evaluate_test=False``
    never touches the test split (search trials) and returns None for it.
    """
    train = config.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    state = TrainState()
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.jsonl"
    if resume and last_path.exists():
        payload = checkpoint.load(last_path, device)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        state = TrainState(**payload["state"])
    elif log_path.exists():
        log_path.unlink()
    _truncate_log(log_path, state.epoch)
    table = training_table(data, config.data.train_windows, config.data.window_stride)
    scorer = model_scorer(model)
    while (reason := _stop_reason(state, train)) is None:
        epoch = state.epoch + 1
        started = time.perf_counter()
        loss, evaluations = _run_epoch(model, optimizer, table, config, epoch, device)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "loss": loss, "seconds": round(seconds, 3), "nfe": evaluations}
        state.epoch, state.seconds, state.nfe = (
            epoch,
            state.seconds + seconds,
            state.nfe + evaluations,
        )
        # Validate on schedule, and always after the epoch that ends training.
        if epoch % train.eval_every == 0 or _stop_reason(state, train) is not None:
            record["valid"] = _validate(model, scorer, data, config, device, state, out)
            if on_validation is not None and on_validation(
                epoch, record["valid"][SELECTION_METRIC]
            ):
                state.stopped_by = "pruned"
        _append_log(log_path, record)
        checkpoint.save(last_path, _checkpoint_payload(model, optimizer, state, config))
        tqdm.write(_summary(record, state))
    state.stopped_by = reason
    if not best_path.exists():
        raise TrainingError("no epoch was validated; raise epochs or time_budget")
    model.load_state_dict(checkpoint.load(best_path, device)["model"])
    model.eval()
    valid = evaluate(scorer, data, "valid", config.eval, device)
    test = None
    if evaluate_test:
        test = evaluate(scorer, data, "test", config.eval, device)  # touched once, from best.pt
    return state, valid, test
