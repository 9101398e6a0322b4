"""Batched evaluation of any scorer under the full-ranking (default) or sampled protocol.

A scorer maps a :class:`~deepm3.data.sequences.Batch` to scores ``(B, num_items + 1)`` (column 0
is padding and is never ranked). Users are processed in chunks, never one at a time, and a chunk
holds at most ``max_scores`` scores, so memory stays bounded however many items there are (at
370k items and the default 2**22, 11 users at a time, 16 MB of float32 scores).

``eval_users=N`` ranks a fixed-seed random sample of N users instead of all of them, for
budgets that cannot rank every user; the sample and its seed are recorded in the protocol, and
every model evaluated with the same setting sees the same users.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from deepm3.config import EvalConfig
from deepm3.data.prepare import Prepared
from deepm3.data.sequences import (
    Batch,
    SequenceTable,
    evaluation_table,
    flat_ranges,
    history_items,
    training_item_counts,
    trim_padding,
)
from deepm3.errors import ConfigError, DataError
from deepm3.eval.metrics import check_metrics, metrics_from_ranks, pessimistic_ranks

Scorer = Callable[[Batch], torch.Tensor]


@dataclass(frozen=True)
class EvalResult:
    """Metrics over all evaluated users, and over the users whose target is *untied*: its
    timestamp differs from the last history event's (tied targets are ordered by the data's tie
    rule, which an order-reading model can exploit). ``untied_metrics`` is empty when every
    evaluated target is tied. Every metric is checked to be a finite number in [0, 1]."""

    metrics: dict[str, float]
    untied_metrics: dict[str, float]
    per_user: pd.DataFrame  # columns: user, target, rank, tied
    protocol: dict

    def __post_init__(self) -> None:
        role = self.protocol.get("role", "evaluation")
        check_metrics(self.metrics, f"{role} metrics")
        check_metrics(self.untied_metrics, f"{role} untied metrics")


def sample_negatives(
    seen_rows: np.ndarray,
    seen_items: np.ndarray,
    targets: np.ndarray,
    num_items: int,
    count: int,
    weights: np.ndarray | None,
    seed: int,
) -> np.ndarray:
    """(N, count) distinct items per row, none of them the target or already seen.

    ``weights`` (num_items + 1,) gives popularity sampling; None is uniform. Same seed, same
    negatives, for every model.
    """
    rng = np.random.default_rng(seed)
    starts = np.searchsorted(seen_rows, np.arange(len(targets) + 1))
    probabilities = None
    if weights is not None:
        probabilities = weights[1:].astype(np.float64) + 1e-12
        probabilities /= probabilities.sum()
    negatives = np.zeros((len(targets), count), dtype=np.int64)
    for row, target in enumerate(targets):
        excluded = set(seen_items[starts[row] : starts[row + 1]].tolist()) | {int(target)}
        if num_items - len(excluded) < count:
            raise ConfigError(f"cannot sample {count} unseen negatives for a user: too few items")
        chosen: list[int] = []
        while len(chosen) < count:
            draw = rng.choice(num_items, size=2 * count, p=probabilities) + 1
            for item in draw.tolist():
                if item not in excluded:
                    excluded.add(item)
                    chosen.append(item)
                    if len(chosen) == count:
                        break
        negatives[row] = chosen
    return negatives


def evaluated_rows(count: int, config: EvalConfig) -> np.ndarray:
    """Row indices ranked: all ``count`` rows, or ``eval_users`` of them drawn without
    replacement with ``eval_users_seed`` (sorted, so paired evaluations stay aligned)."""
    if config.eval_users == 0 or config.eval_users >= count:
        return np.arange(count)
    rng = np.random.default_rng(config.eval_users_seed)
    return np.sort(rng.choice(count, size=config.eval_users, replace=False))


def users_per_chunk(config: EvalConfig, num_items: int) -> int:
    """Users scored at once: ``eval_batch_size``, fewer when the scores would pass
    ``max_scores``."""
    return max(1, min(config.eval_batch_size, config.max_scores // (num_items + 1)))


def evaluate(
    scorer: Scorer,
    data: Prepared,
    role: str,
    config: EvalConfig,
    device: torch.device | str = "cpu",
    progress: bool = False,
    table: SequenceTable | None = None,
) -> EvalResult:
    """Rank each evaluated user's ``role`` target (``valid`` or ``test``) and average metrics.

    One masking rule for both protocols: with ``exclude_seen`` every item of the user's history
    scores -inf, a target seen before included (it then ranks last), and sampled negatives are
    drawn from unseen items only; without it nothing is masked and negatives may be any item
    other than the target.

    ``table`` replaces the model's input rows (default ``evaluation_table(data, role)``), e.g.
    with perturbed histories (:mod:`deepm3.stats.perturb`); it must hold the same users in
    the same order. Targets, masking and negatives stay those of the data, so a clean and a
    perturbed evaluation are paired user by user.
    """
    table = evaluation_table(data, role) if table is None else table
    total_users = len(table)
    if total_users == 0:
        raise DataError(
            f"no user can be evaluated on the {role} split: no user has a {role} target "
            "(too few events per user after filtering?)"
        )
    if config.eval_users:
        table = table.take(evaluated_rows(total_users, config))
    seen_rows, seen_items = history_items(data, table.users, role)
    if not config.exclude_seen:
        seen_rows, seen_items = seen_rows[:0], seen_items[:0]
    targets = table.target
    repeats = np.isin(
        np.arange(len(table)) * (data.num_items + 1) + targets,
        seen_rows * (data.num_items + 1) + seen_items,
    )
    row_starts = np.searchsorted(seen_rows, np.arange(len(table) + 1))
    negatives = None
    if config.protocol == "sampled":
        weights = training_item_counts(data) if config.negative_sampling == "popularity" else None
        negatives = sample_negatives(
            seen_rows,
            seen_items,
            targets,
            data.num_items,
            config.num_negatives,
            weights,
            config.sample_seed,
        )
    ranks = np.zeros(len(table), dtype=np.int64)
    size = users_per_chunk(config, data.num_items)
    # Users of similar history length are scored together and each chunk's leading padding is
    # trimmed: the work follows the histories, not max_len (every model is invariant to left
    # padding and to the other users of its batch, tests/test_models.py).
    order = np.argsort(table.lengths(), kind="stable")
    chunks = range(0, len(table), size)
    with torch.no_grad():  # a block, not a decorator: mutation testing reaches it
        for start in tqdm(chunks, desc=f"evaluate {role}", disable=not progress, leave=False):
            rows = order[start : start + size]
            batch = trim_padding(table.batch(rows)).to(device)
            scores = torch.nan_to_num(scorer(batch).float(), nan=float("-inf"))
            scores[:, 0] = float("-inf")
            counts = row_starts[rows + 1] - row_starts[rows]
            seen = flat_ranges(row_starts[rows], counts)
            mask_rows = torch.from_numpy(np.repeat(np.arange(len(rows)), counts)).to(scores.device)
            scores[mask_rows, torch.from_numpy(seen_items[seen]).to(scores.device)] = float("-inf")
            if negatives is None:
                ranks[rows] = pessimistic_ranks(scores[:, 1:], batch.target - 1).cpu().numpy()
                continue
            candidates = torch.cat(
                [batch.target[:, None], torch.from_numpy(negatives[rows]).to(scores.device)], 1
            )
            first = torch.zeros_like(batch.target)
            ranks[rows] = pessimistic_ranks(scores.gather(1, candidates), first).cpu().numpy()
    tied = table.target_time == table.timestamps[:, -1]
    protocol = {
        **dataclasses.asdict(config),
        "role": role,
        "users": int(len(table)),
        "users_total": int(total_users),
        "users_per_chunk": int(size),
        "untied_users": int((~tied).sum()),
        "targets_seen_before": int(repeats.sum()),
    }
    untied = ranks[~tied]
    return EvalResult(
        metrics=metrics_from_ranks(torch.from_numpy(ranks), config.ks),
        untied_metrics=metrics_from_ranks(torch.from_numpy(untied), config.ks)
        if len(untied)
        else {},
        per_user=pd.DataFrame(
            {"user": table.users, "target": targets, "rank": ranks, "tied": tied}
        ),
        protocol=protocol,
    )
