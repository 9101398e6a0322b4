"""Seconds per training epoch under each ``train.batching``: random, chunked, length.

    PYTHONPATH=. python3 benchmarks/batching.py --data-dir ../shared/data --batches 8

Both orders cover one epoch of the training windows of ``--dataset`` (default Amazon Beauty
5-core, ``max_len`` 50, every window) in batches of ``--batch-size`` (256), with the standard
budget's loss (a sampled softmax over 2048 popularity-drawn negatives shared per batch, logQ)
and AdamW: ``random`` feeds every batch at ``max_len`` columns, ``chunked`` computes the same
batches in length chunks without their padding, ``length`` groups windows of similar length
and trims each batch's leading padding (:mod:`deepm3.train.batching`). Per model
and order, ``--batches`` batches drawn evenly from the epoch are timed after one warm-up batch
and the epoch is projected from their mean time per padded cell (length batches differ in
width, so their mean per batch would mislead). Prints the ratio random / length, measured in
the same process. One torch thread unless ``--threads``. Raw data from ``--data-dir`` or
``$DEEPM3_DATA_DIR`` only: without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepm3.config import (
    BATCHINGS,  # noqa: E402
    DataConfig,  # noqa: E402
)
from deepm3.data.prepare import prepare  # noqa: E402
from deepm3.data.sequences import training_table, trim_padding  # noqa: E402
from deepm3.errors import DeepM3Error  # noqa: E402
from deepm3.models import build_model, model_options  # noqa: E402
from deepm3.models.contract import run_model  # noqa: E402
from deepm3.train.batching import batch_chunks, epoch_batches  # noqa: E402
from deepm3.train.losses import sequence_loss, target_log_q  # noqa: E402
from deepm3.train.negatives import negative_sampler  # noqa: E402

# The calibration ladder's widths (configs/calibration/amazon-beauty/*)
MODELS = {
    "sasrec": {"hidden_size": 128, "num_layers": 2, "num_heads": 2, "dropout": 0.5},
    "gru4rec": {"hidden_size": 128, "dropout": 0.5, "output_norm": "layer"},
    "deepm3": {"hidden_size": 128, "field_width": 64, "dropout": 0.5, "output_norm": "layer"},
}


class Order:
    """One model trained under one batching: its epoch's batches and a timed step."""

    def __init__(self, name: str, data, table, batching: str, args, sampler) -> None:
        torch.manual_seed(0)
        options = model_options(name, MODELS[name])
        self.model = build_model(name, data.num_items, options, args.max_len).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        rng = np.random.default_rng(0)
        self.batches = epoch_batches(batching, table.lengths(), args.batch_size, rng)
        self.batching, self.table, self.sampler = batching, table, sampler
        self.seconds, self.cells = 0.0, 0
        self.epoch_cells = sum(self.cells_of(rows) for rows in self.batches)

    def chunks(self, rows) -> list:
        """The batch ``rows`` as fed: one tensor batch, or its length chunks (``chunked``)."""
        pieces = batch_chunks(self.batching, rows, self.table.lengths())
        batches = [self.table.batch(piece) for piece in pieces]
        return batches if self.batching == "random" else [trim_padding(b) for b in batches]

    def cells_of(self, rows) -> int:
        return sum(batch.items.numel() for batch in self.chunks(rows))

    def step(self, index: int, timed: bool = True) -> None:
        rows = self.batches[index]
        total = int((self.table.targets[rows] > 0).sum())
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        chunks = self.chunks(rows)
        for batch in chunks:
            states, _ = run_model(self.model, batch)
            loss = sequence_loss(
                "shared_ce",
                self.model.readout(states),
                self.model.item_embedding.weight,
                batch.targets,
                2048,
                logq=True,
                sampler=self.sampler,
            )
            (loss * (int((batch.targets > 0).sum()) / total)).backward()
        self.optimizer.step()
        if timed:
            self.seconds += time.perf_counter() - started
            self.cells += sum(batch.items.numel() for batch in chunks)

    def record(self) -> dict:
        return {
            "batches": len(self.batches),
            "padded_cells": int(self.epoch_cells),
            "epoch_s": round(self.seconds / self.cells * self.epoch_cells, 1),
        }


def compare(name: str, data, table, args, sampler) -> dict:
    """Every order of ``name``, timed interleaved (a random batch, a chunked one, a length one,
    ...) so that a change of the machine's load moves all alike; batches drawn evenly over each
    epoch."""
    orders = {b: Order(name, data, table, b, args, sampler) for b in BATCHINGS}
    picks = {}
    for batching, order in orders.items():
        order.step(0, timed=False)  # warm-up
        count = min(args.batches, len(order.batches) - 1)
        picks[batching] = np.linspace(1, len(order.batches) - 1, count).astype(int)
    for turn in range(max(len(p) for p in picks.values())):
        for batching, order in orders.items():
            if turn < len(picks[batching]):
                order.step(int(picks[batching][turn]))
    return {batching: order.record() for batching, order in orders.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPM3_DATA_DIR"))
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if not args.data_dir:
        print("no data: pass --data-dir or set DEEPM3_DATA_DIR (nothing is downloaded)")
        return 0
    os.environ["DEEPM3_DATA_DIR"] = args.data_dir
    torch.set_num_threads(args.threads)
    try:
        data = prepare(DataConfig(dataset=args.dataset, max_len=args.max_len))
    except DeepM3Error as error:
        print(f"cannot read {args.dataset}: {error}")
        return 0
    table = training_table(data)
    counts = np.bincount(table.targets.ravel(), minlength=data.num_items + 1)
    sampler = negative_sampler("popularity", data.num_items, target_log_q(counts), 0.5)
    real = float(table.lengths().sum() / table.items.size)
    print(
        f"{args.dataset}: {len(table)} windows, max_len {args.max_len}, real positions "
        f"{real:.1%}; batch size {args.batch_size}; cpu, {args.threads} thread(s)"
    )
    rows = {}
    for name in args.models.split(","):
        measured = compare(name, data, table, args, sampler)
        base = measured["random"]["epoch_s"]
        ratios = {b: round(base / measured[b]["epoch_s"], 2) for b in BATCHINGS[1:]}
        rows[name] = {**measured, "ratio_random_over": ratios}
        print(
            f"{name}: "
            + ", ".join(f"{b} {measured[b]['epoch_s']:.0f} s/epoch" for b in BATCHINGS)
            + f" ({measured['random']['batches']} / {measured['length']['batches']} batches); "
            + ", ".join(f"random / {b} {ratio:.2f}x" for b, ratio in ratios.items())
        )
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")}
        record = {
            "device": "cpu",
            "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine
            "real_share": round(real, 4),
            "settings": settings,
        }
        args.out.write_text(json.dumps({**record, "models": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
