"""How an epoch's training rows are grouped into batches, and how a batch is computed
(``train.batching``).

* ``random``: the rows shuffled and cut into batches of ``batch_size`` rows, the order
  ``SequenceTable.batches(shuffle=True)`` draws; each batch fed whole at ``max_len`` columns.
* ``chunked``: the same batches as ``random`` (the same draws), each computed in chunks of rows
  of similar length with their leading padding trimmed
  (:func:`deepm3.data.sequences.trim_padding`); every chunk's loss is weighted by its share of
  the batch's predicted positions and the gradients accumulate before the one update, so a
  batch's update is that of the whole batch (only dropout and sampled negatives are drawn per
  chunk). The split (:func:`length_chunks`) minimises the padded cells plus a fixed cost per
  chunk.
* ``length``: batches of rows of similar length, so that trimming leaves little padding. The
  rows are shuffled, then stably sorted by length (rows of one length stay in random order)
  and cut greedily so that each batch's padded cells (rows x its longest row) stay within
  ``batch_size`` x the mean row length; the batches are then shuffled. A batch so holds about
  as many predicted positions as a random batch of ``batch_size`` rows, and an epoch has about
  as many batches, but a batch's users all have histories of one length, which changes the
  optimisation (on Beauty, at the ladder's settings, DeepM3 and GRU4Rec lost 3-6% validation
  NDCG@10 with it, SASRec 1%).

On Beauty 5-core (``max_len`` 50, batches of 256, 88% of a window padding) an epoch takes,
against ``random``: SASRec 3.2x less time ``chunked`` and 4.7x ``length``, GRU4Rec 2.0x and
2.7x, DeepM3 1.9x and 2.9x (``benchmarks/batching.py``, its committed JSON).

Batches are drawn from the epoch's generator only, so a resumed run draws the same batches.
"""

from __future__ import annotations

import numpy as np

from deepm3.config import BATCHINGS


def random_batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Rows 0..count-1 shuffled and cut into batches of ``batch_size`` rows (the last shorter)."""
    order = rng.permutation(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Rows grouped by similar ``lengths`` (N,) (module docstring): every row in exactly one
    batch, each batch's rows x longest row at most ``batch_size`` x mean length unless it is a
    single row, the batches in random order."""
    if len(lengths) == 0:
        return []
    order = rng.permutation(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]
    budget = batch_size * float(lengths.mean())
    sorted_lengths = np.maximum(lengths[order], 1)
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        # ascending lengths: the row just added is the longest of rows start..end-1
        if end - start > 1 and (end - start) * sorted_lengths[end - 1] > budget:
            batches.append(order[start : end - 1])
            start = end - 1
    batches.append(order[start:])
    return [batches[i] for i in rng.permutation(len(batches))]


# The fixed cost of one more chunk, in padded cells (positions x rows): on one CPU thread
# SASRec's epoch on Beauty took 23.7 / 22.7 / 29.5 s at 256 / 1024 / 4096, GRU4Rec and DeepM3
# changed by under 10% (a one-off run at benchmarks/batching.py's settings, load 2.5).
CHUNK_OVERHEAD_CELLS = 1024


def length_chunks(
    rows: np.ndarray, lengths: np.ndarray, overhead: int = CHUNK_OVERHEAD_CELLS
) -> list[np.ndarray]:
    """``rows`` sorted by ``lengths[rows]`` (stably) and cut into consecutive chunks that
    minimise the sum over chunks of (rows x the chunk's longest row + ``overhead``): the exact
    optimum, by dynamic programming over the sorted lengths (O(rows^2), vectorised per end)."""
    rows = rows[np.argsort(lengths[rows], kind="stable")]
    widths = np.maximum(lengths[rows], 1).astype(np.float64)
    count = len(rows)
    best = np.zeros(count + 1)
    start_of = np.zeros(count + 1, dtype=np.int64)
    for end in range(1, count + 1):  # chunk rows[start:end], its longest row is rows[end - 1]
        starts = np.arange(end)
        costs = best[:end] + (end - starts) * widths[end - 1] + overhead
        start_of[end] = int(np.argmin(costs))
        best[end] = costs[start_of[end]]
    chunks, end = [], count
    while end > 0:
        chunks.append(rows[start_of[end] : end])
        end = start_of[end]
    return chunks[::-1]


def batch_chunks(batching: str, rows: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The chunks one batch's ``rows`` are computed in: several under ``chunked``, else one."""
    return length_chunks(rows, lengths, CHUNK_OVERHEAD_CELLS) if batching == "chunked" else [rows]


def epoch_batches(
    batching: str, lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The rows of each (global) batch of one epoch under ``batching``."""
    if batching == "length":
        return length_batches(lengths, batch_size, rng)
    if batching in ("random", "chunked"):
        return random_batches(len(lengths), batch_size, rng)
    raise ValueError(f"unknown batching {batching!r}; valid: {', '.join(BATCHINGS)}")
