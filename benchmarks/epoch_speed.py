"""Seconds per training epoch on MovieLens-1M, per model, the accelerated DeepM3 included.

    python benchmarks/epoch_speed.py --data-dir ../shared/data --max-batches 3
    PYTHONPATH=. python3 benchmarks/epoch_speed.py --device cuda --merge-into results/card.json

An epoch is the training loop's work per batch (forward, full-softmax cross-entropy at every
position, backward, gradient clipping at 5, AdamW; bf16 autocast on CUDA as ``train.amp``, the
accelerated recurrence staying float32) over the training windows of ML-1M's shipped defaults
(``max_len`` 200, batches of 128 windows), in one fixed order for every model. The first batch,
which compiles or captures an accelerated recurrence, is timed apart (``setup_s``) and is not
part of the epoch; with ``--max-batches N`` only N more batches are timed and the epoch is
projected from their mean (``projected``: true). Raw data is read from ``--data-dir`` or
``$DEEPM3_DATA_DIR`` only, never downloaded: without it the script says so and exits 0.
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

from variants import ACCELERATED, CUDA_ONLY, VARIANTS, build_variant  # noqa: E402

from deepm3.config import DataConfig  # noqa: E402
from deepm3.data.prepare import prepare  # noqa: E402
from deepm3.data.sequences import training_table  # noqa: E402
from deepm3.errors import DeepM3Error  # noqa: E402
from deepm3.models.contract import run_model  # noqa: E402
from deepm3.train.device import device_name, select_device  # noqa: E402
from deepm3.train.losses import sequence_loss  # noqa: E402

MAX_LEN, BATCH_SIZE, GRAD_CLIP = 200, 128, 5.0  # deepm3/defaults/ml-1m and train's default
DEFAULT_MODELS = "sasrec,tisasrec,gru4rec,deepm3-euler,deepm3-euler-graph,deepm3-rk4"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_seconds(variant, table, num_items, device, max_batches: int) -> dict:
    """Time one epoch of ``variant`` over ``table`` (see the module docstring)."""
    model = build_variant(variant, num_items, MAX_LEN, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    order = np.random.default_rng(0).permutation(len(table))
    batches = [order[start : start + BATCH_SIZE] for start in range(0, len(order), BATCH_SIZE)]
    amp = device.type == "cuda"

    def step(rows) -> float:
        batch = table.batch(rows).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            states, _ = run_model(model, batch)
            scored = model.readout(states)
            loss = sequence_loss("ce", scored, model.item_embedding.weight, batch.targets, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        return loss.item()  # one host sync per batch, as the training loop has

    model.train()
    started = time.perf_counter()
    step(batches[0])
    setup = time.perf_counter() - started
    timed = batches[1 : 1 + max_batches] if max_batches else batches
    started = time.perf_counter()
    losses = [step(rows) for rows in timed]
    _sync(device)
    seconds = time.perf_counter() - started
    return {
        "model": variant,
        "epoch_s": seconds * len(batches) / len(timed),
        "projected": len(timed) != len(batches),
        "batches_timed": len(timed),
        "batches_per_epoch": len(batches),
        "ms_per_batch": 1e3 * seconds / len(timed),
        "setup_s": setup,
        "mean_loss": float(np.mean(losses)),
        "amp": amp,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPM3_DATA_DIR"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="names as in speed.py")
    parser.add_argument("--max-batches", type=int, default=0, help="0: the whole epoch")
    parser.add_argument("--time-limit", type=float, default=0, help="seconds; then skip the rest")
    parser.add_argument("--merge-into", help="JSON file to add an 'epochs' entry to")
    args = parser.parse_args(argv)
    device = select_device(args.device)
    if not args.data_dir or not Path(args.data_dir).is_dir():
        print(f"epoch timing skipped: no data directory ({args.data_dir or 'none given'})")
        return 0
    try:
        data = prepare(DataConfig(dataset="ml-1m", data_dir=args.data_dir, max_len=MAX_LEN))
    except DeepM3Error as exc:
        print(f"epoch timing skipped: no MovieLens-1M under {args.data_dir} ({exc})")
        return 0
    table = training_table(data)
    print(f"ML-1M from {args.data_dir}: {data.num_items} items, {len(table)} training windows")
    rows, skipped, started = [], [], time.perf_counter()
    for variant in args.models.split(","):
        if variant not in VARIANTS and variant not in ACCELERATED:
            parser.error(f"unknown model {variant}; valid: {', '.join([*VARIANTS, *ACCELERATED])}")
        cuda_only = ACCELERATED.get(variant, ("", "none"))[1] in CUDA_ONLY
        late = args.time_limit and time.perf_counter() - started > args.time_limit
        if late or (cuda_only and device.type != "cuda"):
            skipped.append(variant)
            continue
        rows.append(epoch_seconds(variant, table, data.num_items, device, args.max_batches))
        row = rows[-1]
        projected = " (projected)" if row["projected"] else ""
        print(
            f"| {variant} | {row['epoch_s']:.1f} s / epoch{projected} "
            f"| {row['ms_per_batch']:.1f} ms / batch | setup {row['setup_s']:.1f} s "
            f"| loss {row['mean_loss']:.3f} |"
        )
    if skipped:
        print(f"skipped (CUDA only, or past --time-limit): {', '.join(skipped)}")
    record = {
        "device": device_name(device),
        "data": {"dir": args.data_dir, "num_items": data.num_items, "windows": len(table)},
        "rows": rows,
        "skipped": skipped,
    }
    if args.merge_into:
        path = Path(args.merge_into)
        merged = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**merged, "epochs": record}, indent=2) + "\n")
        print(f"written: {path} (epochs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
