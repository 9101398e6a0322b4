"""The one training loop, for every trainable model.

Per epoch: shuffle training users (seeded by ``(seed, epoch)``), minimise the configured loss at
every position, clip gradients, step AdamW; then validate (full ranking, NDCG@10 selects the
model), write a log line and an atomic ``last.pt``; ``best.pt`` keeps the best model. Because
every epoch re-seeds its own randomness, a run resumed from ``last.pt`` (after any interruption,
``kill -9`` included) repeats exactly what the uninterrupted run would have done (on CPU).
A step whose loss or gradients are not finite stops training before the optimizer moves, so no
checkpoint is ever written from a poisoned step. The test split is evaluated once, from
``best.pt``, after training.

Under ``torchrun`` (see :mod:`deepm3.train.distributed`) ``batch_size`` is the global batch: every
rank draws the same global order and trains on its contiguous share of each global batch, with
its loss weighted so that the gradients ``DistributedDataParallel`` averages equal the gradient
of the mean loss over the global batch's positions. Rank 0 alone validates, logs and writes
checkpoints; the training state (and with it every stop decision: patience, time budget,
pruning) is broadcast from rank 0 after each epoch, and a non-finite step on any rank stops all
of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deepm3.config import SELECTION_METRIC, RunConfig
from deepm3.data.prepare import Prepared
from deepm3.data.sequences import Batch, SequenceTable, training_table, trim_padding
from deepm3.errors import DataError
from deepm3.eval.evaluator import EvalResult
from deepm3.models.contract import item_scores, run_model
from deepm3.train import checkpoint, distributed
from deepm3.train.batching import batch_chunks, epoch_batches
from deepm3.train.eta import duration, remaining_seconds
from deepm3.train.losses import check_negatives, sequence_loss, target_log_q
from deepm3.train.negatives import NegativeSampler, negative_sampler
from deepm3.train.rundir import read_log
from deepm3.train.selection import (
    TrainingError,
    TrainState,
    final_results,
    stop_reason,
    validate,
)


def model_scorer(model: nn.Module):
    """Scores for evaluation: the state at the last position against all items."""

    def score(batch: Batch) -> torch.Tensor:
        states, _ = run_model(model, batch)
        return item_scores(model, states[:, -1])

    return score


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _non_finite(loss: torch.Tensor, norm: torch.Tensor, epoch: int, number: int) -> TrainingError:
    if torch.isfinite(loss) and torch.isfinite(norm):
        where = "a loss or gradient norm became non-finite in another process"
    else:
        what = "loss" if not torch.isfinite(loss) else "gradient norm"
        where = f"the {what} became {(loss if what == 'loss' else norm).item()}"
    return TrainingError(
        f"{where} at epoch {epoch}, batch {number + 1}; training stopped before the update, "
        "and the last good checkpoint (last.pt, best.pt) is kept. Try a lower lr, stronger "
        "gradient clipping or a Lipschitz-constrained field."
    )


def _run_epoch(
    trainer: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    table: SequenceTable,
    config: RunConfig,
    epoch: int,
    device: torch.device,
    item_log_q: torch.Tensor | None = None,
    sampler: NegativeSampler | None = None,
) -> tuple[float, int]:
    """One pass over the training users; returns mean loss and function evaluations.

    ``item_log_q`` (N + 1,): log frequency of each item among the training targets, which
    ``inbatch_ce`` needs for its logQ correction (:func:`deepm3.train.losses.target_log_q`).
    ``sampler``: where the sampled losses draw negatives (None: uniformly).

    ``trainer`` is ``model`` or its ``DistributedDataParallel`` wrapper (its forward is the one
    that synchronises gradients). Under torchrun, the loss is the mean over ranks and batches of
    the global batches' mean loss; evaluations are averaged over ranks.
    """
    train = config.train
    world, rank = distributed.world_size(), distributed.rank()
    # dropout: the same draws after a resume
    torch.manual_seed(distributed.rank_seed(train.seed * 100_003 + epoch))
    rng = np.random.default_rng([train.seed, epoch])  # the same global order on every rank
    negatives = torch.Generator().manual_seed(distributed.rank_seed(train.seed * 7919 + epoch))
    trainer.train()
    total, shown, evaluations = 0.0, 0.0, 0
    lengths = table.lengths()
    batches = epoch_batches(train.batching, lengths, train.batch_size, rng)
    trim = train.batching != "random"  # random keeps max_len columns (its dropout draws)
    progress = train.progress and distributed.is_main()
    bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress)
    for number, rows in enumerate(bar):
        mine, real = distributed.shard_rows(rows, rank, world)
        mine_positions = int((table.targets[mine] > 0).sum())
        positions = mine_positions if real else 0
        global_positions = int((table.targets[rows] > 0).sum()) if world > 1 else positions
        weight = distributed.loss_weight(positions, global_positions, world)  # 1.0 alone
        optimizer.zero_grad(set_to_none=True)
        chunks = batch_chunks(train.batching, mine, lengths)
        loss = torch.zeros((), device=device)
        for index, chunk in enumerate(chunks):
            batch = trim_padding(table.batch(chunk)) if trim else table.batch(chunk)
            share = int((batch.targets > 0).sum()) / mine_positions  # 1.0 for a whole batch
            batch = batch.to(device)
            # gradients of all chunks but the last accumulate without DDP's all-reduce
            last = index == len(chunks) - 1
            with nullcontext() if last or world == 1 else trainer.no_sync():
                with _autocast(device, train.amp):
                    states, aux = run_model(trainer, batch)
                    part = sequence_loss(
                        train.loss,
                        model.readout(states),
                        model.item_embedding.weight,
                        batch.targets,
                        train.loss_negatives,
                        negatives,
                        logq=train.logq,
                        item_log_q=item_log_q,
                        chunk=train.loss_chunk,
                        sampler=sampler,
                    )
                (part * (share * weight)).backward()
            loss = loss + part.detach() * share
            evaluations += int(aux.get("nfe", 0))
        # The gradient norm is needed anyway for clipping; max_norm=inf measures without clipping.
        norm = nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip or float("inf"))
        # one device sync for both checks (the loss is read back below anyway)
        finite = bool(torch.isfinite(torch.stack([loss.float(), norm.float()])).all())
        if not distributed.all_ranks(finite):
            raise _non_finite(loss, norm, epoch, number)
        optimizer.step()
        value = loss.item()
        total += value * weight / world  # summed over ranks: the global batch's mean loss
        shown += value
        bar.set_postfix(loss=f"{shown / (number + 1):.4f}")
    total, evaluations = distributed.sum_across([total, evaluations])
    return total / max(len(batches), 1), round(evaluations / world)


def _checkpoint_payload(model, optimizer, state: TrainState, config: RunConfig) -> dict:
    """``last.pt``: everything a resume needs (tensors and plain values: weights_only loads it)."""
    return {
        "model_name": checkpoint.model_name(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": state.__dict__.copy(),
        "config": config.to_dict(),
    }


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, epochs_kept: int) -> None:
    """After a resume, drop log lines of epochs that the checkpoint does not contain. A log
    that is gone while the checkpoint holds epochs is damage (each epoch's line is written
    before its checkpoint): refused, naming the file."""
    if not path.exists():
        if epochs_kept:
            raise DataError(
                f"{path}: missing, but last.pt holds {epochs_kept} epoch(s) whose lines it "
                "had; restore it, or start the run again (--overwrite)"
            )
        return
    records = read_log(path, epochs_kept)
    kept = [record for _, record in records if record["epoch"] <= epochs_kept]
    path.write_text("".join(json.dumps(record) + "\n" for record in kept))


def _summary(record: dict, state: TrainState, epochs: int, left: float | None) -> str:
    """One line per epoch; ``left``: seconds the remaining epochs would take at this run's
    rate so far (None when training stops after this epoch)."""
    text = f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}, {record['seconds']:.1f} s"
    if "valid" in record:
        text += (
            f", valid {SELECTION_METRIC} {record['valid'][SELECTION_METRIC]:.4f} "
            f"(best {state.best_metric:.4f} at epoch {state.best_epoch})"
        )
    if left is not None:
        more = epochs - state.epoch
        text += f"; about {duration(left)} left ({more} more epoch{'s' * (more > 1)} at most)"
    return text


def fit(
    model: nn.Module,
    data: Prepared,
    config: RunConfig,
    out: Path,
    device: torch.device,
    resume: bool = False,
    on_validation: Callable[[int, float], bool] | None = None,
    evaluate_test: bool = True,
) -> tuple[TrainState, EvalResult | None, EvalResult | None]:
    """Train with early stopping on validation; return the state and best valid/test results.

    ``on_validation(epoch, valid_ndcg10)`` is called after each validation; returning True stops
    training with ``stopped_by="pruned"`` (hyper-parameter search). ``evaluate_test=False``
    never touches the test split (search trials) and returns None for it. Under torchrun, ranks
    other than 0 return None for both results (rank 0 alone evaluates and writes).
    """
    train = config.train
    check_negatives(train.loss, train.loss_negatives, data.num_items)
    main = distributed.is_main()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    state = TrainState()
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.jsonl"
    if resume and distributed.from_main(last_path.exists()):
        state = _load_last(last_path, model, optimizer, device)
    elif main and log_path.exists():
        log_path.unlink()
    if main:
        _truncate_log(log_path, state.epoch)
    trainer = distributed.wrap(model, device)
    if main and distributed.active():
        tqdm.write(f"training on {distributed.describe()}; global batch {train.batch_size} rows")
    table = training_table(data, config.data.train_windows, config.data.window_stride)
    item_log_q = None
    if train.loss == "inbatch_ce" or train.loss_sampling == "popularity":
        counts = np.bincount(table.targets.ravel(), minlength=data.num_items + 1)
        item_log_q = target_log_q(counts).to(device)
    sampler = negative_sampler(
        train.loss_sampling, data.num_items, item_log_q, train.loss_sampling_alpha
    ).to(device)
    scorer = model_scorer(model)
    first_epoch, clock = state.epoch, time.perf_counter()  # this process's rate, for the ETA
    while (reason := stop_reason(state, train)) is None:
        epoch = state.epoch + 1
        started = time.perf_counter()
        loss, evaluations = _run_epoch(
            trainer, model, optimizer, table, config, epoch, device, item_log_q, sampler
        )
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "loss": loss, "seconds": round(seconds, 3), "nfe": evaluations}
        state.epoch, state.seconds, state.nfe = (
            epoch,
            state.seconds + seconds,
            state.nfe + evaluations,
        )
        if main:  # rank 0 alone validates, logs and writes checkpoints
            # Validate on schedule, and always after the epoch that ends training.
            if epoch % train.eval_every == 0 or stop_reason(state, train) is not None:
                record["valid"] = validate(model, scorer, data, config, device, state, out)
                if on_validation is not None and on_validation(
                    epoch, record["valid"][SELECTION_METRIC]
                ):
                    state.stopped_by = "pruned"
            _append_log(log_path, record)
            checkpoint.save(last_path, _checkpoint_payload(model, optimizer, state, config))
            left = None
            if stop_reason(state, train) is None:
                elapsed = time.perf_counter() - clock
                left = remaining_seconds(elapsed, epoch - first_epoch, train.epochs - first_epoch)
            tqdm.write(_summary(record, state, train.epochs, left))
        state = distributed.from_main(state)  # rank 0's clock and validations decide for all
    state.stopped_by = reason
    if not main:
        return state, None, None
    valid, test = final_results(model, scorer, data, config, device, best_path, evaluate_test)
    return state, valid, test


def _load_last(path: Path, model: nn.Module, optimizer, device: torch.device) -> TrainState:
    """Load ``last.pt`` into ``model`` and ``optimizer``, checked first; every rank reads it,
    so all must see the run directory."""
    if not path.exists():
        raise TrainingError(
            f"rank {distributed.rank()} cannot see {path}, which rank 0 resumes from: resuming "
            "under torchrun needs the run directory on a file system every node shares"
        )
    payload = checkpoint.load_model(path, model, device, keys=("model", "optimizer", "state"))
    state = _stored_state(payload["state"], path)
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{path}: optimizer state does not fit the run's model ({exc})") from None
    return state


def _stored_state(stored: object, path: Path) -> TrainState:
    """The :class:`TrainState` saved in ``path``, with its fields and their types checked."""
    defaults = TrainState().__dict__
    if not isinstance(stored, dict) or set(stored) != set(defaults):
        raise DataError(f"{path}: damaged, its training state lacks or adds fields")
    for name, default in defaults.items():
        # an int field holds an int, a float field a number, stopped_by a string or None
        allowed = {int: (int,), float: (int, float)}.get(type(default), (str, type(None)))
        if not isinstance(stored[name], allowed):
            raise DataError(f"{path}: damaged, training state {name}={stored[name]!r:.40}")
    return TrainState(**stored)
