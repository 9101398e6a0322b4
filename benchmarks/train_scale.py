"""Training losses at Amazon Books scale (370k items): output layer + loss, forward and backward.

    python benchmarks/train_scale.py [--items 370000] [--batch 256] [--length 50] [--dim 64]
                                     [--device cpu|cuda] [--threads 1] [--repeats 1]

Only the loss is timed: states (B, T, d) are a leaf tensor that requires grad and the item table
(N + 1, d) is a parameter, as the model would hand them to ``sequence_loss``; every position has
a real target. Targets follow a heavy-tailed popularity (probability ~ rank^-0.9, shuffled over
items), and ``inbatch_ce`` gets the log of that probability as its training frequency. Cases:
``ce`` when its estimated memory fits (otherwise the estimate is printed), ``chunked_ce`` with
two chunk sizes, ``shared_ce`` K = 1024 with and without logQ, ``sampled_ce`` K = 128 per
position, ``inbatch_ce``. Each case runs once on one sequence (warm-up), then ``--repeats``
times on the batch; the median is reported as positions (events) per second and as a ratio to
``chunked_ce`` with the first chunk size, measured in the same run. Peak memory: growth of the
resident size (VmHWM, reset before each case) on CPU, of ``torch.cuda.max_memory_allocated``
on a GPU. Writes ``benchmarks/results/train_scale_<device>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepm3.train.losses import sequence_loss  # noqa: E402

# Peak bytes of ``ce`` per logit, an upper bound: float32 logits, the log-softmax output and
# their gradients (measured on CPU at 370k items and 200 positions: about 10).
CE_BYTES_PER_LOGIT = 4 * 4


def popularity(num_items: int, seed: int) -> np.ndarray:
    """(N + 1,) probabilities, 0 for padding: rank^-0.9 assigned to items in random order."""
    weights = np.arange(1, num_items + 1, dtype=np.float64) ** -0.9
    probabilities = np.zeros(num_items + 1)
    probabilities[1:] = np.random.default_rng(seed).permutation(weights / weights.sum())
    return probabilities


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


class PeakMemory:
    """Peak memory growth (MB) over a block: CUDA allocator on a GPU, VmHWM on Linux CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def _rss_mb(self, field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{field} not in /proc/self/status")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # restart VmHWM from the current resident size
            self.before = self._rss_mb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.growth_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self.before
        else:
            self.growth_mb = self._rss_mb("VmHWM") - self.before


def step(name, states, items, targets, options, seed: int) -> tuple[float, float]:
    """Seconds and value of one forward + backward of the loss."""
    states.grad, items.grad = None, None
    generator = torch.Generator().manual_seed(seed)
    if states.device.type == "cuda":
        torch.cuda.synchronize(states.device)
    started = time.perf_counter()
    loss = sequence_loss(name, states, items, targets, generator=generator, **options)
    loss.backward()
    if states.device.type == "cuda":
        torch.cuda.synchronize(states.device)
    return time.perf_counter() - started, loss.item()


def cases(args, item_log_q: torch.Tensor) -> dict[str, tuple[str, dict]]:
    chunked = {
        f"chunked_ce chunk={chunk}": ("chunked_ce", {"num_negatives": 0, "chunk": chunk})
        for chunk in args.chunks
    }
    shared = {"num_negatives": args.shared_negatives}
    return {
        "ce": ("ce", {"num_negatives": 0}),
        **chunked,
        f"shared_ce K={args.shared_negatives}": ("shared_ce", shared),
        f"shared_ce K={args.shared_negatives} logq": ("shared_ce", {**shared, "logq": True}),
        f"sampled_ce K={args.sampled_negatives}": (
            "sampled_ce",
            {"num_negatives": args.sampled_negatives},
        ),
        "inbatch_ce": ("inbatch_ce", {"num_negatives": 0, "item_log_q": item_log_q}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=370_000, help="N")
    parser.add_argument("--batch", type=int, default=256, help="B sequences")
    parser.add_argument("--length", type=int, default=50, help="T positions per sequence")
    parser.add_argument("--dim", type=int, default=64, help="d")
    parser.add_argument("--chunks", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--shared-negatives", type=int, default=1024)
    parser.add_argument("--sampled-negatives", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--memory-fraction",
        type=float,
        help="ce runs if its estimate is below this share of free memory (CPU 0.5, GPU 0.9)",
    )
    parser.add_argument("--out", help="JSON file (default benchmarks/results/train_scale_<device>)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    positions = args.batch * args.length
    probabilities = popularity(args.items, 0)
    rng = np.random.default_rng(1)
    draws = rng.choice(args.items + 1, size=positions, p=probabilities)
    targets = torch.from_numpy(draws).reshape(args.batch, args.length).to(device)
    item_log_q = torch.from_numpy(np.log(np.maximum(probabilities, 1e-30))).float().to(device)
    scale = args.dim**-0.5  # scores of unit variance, as at initialisation
    states = (torch.randn(args.batch, args.length, args.dim) * scale).to(device).requires_grad_()
    items = torch.nn.Parameter(torch.randn(args.items + 1, args.dim).to(device))
    ce_bytes = CE_BYTES_PER_LOGIT * positions * (args.items + 1)
    free = available_bytes(device)
    fraction = args.memory_fraction or (0.9 if device.type == "cuda" else 0.5)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),  # other work on the machine
        "B": args.batch,
        "T": args.length,
        "positions": positions,
        "d": args.dim,
        "N": args.items,
        "distinct_targets": int(torch.unique(targets).numel()),
        "repeats": args.repeats,
        "ce_estimated_bytes": ce_bytes,
        "available_bytes_at_start": free,
        "cases": {},
    }
    print(
        f"N {args.items:,} items, d {args.dim}, B {args.batch} x T {args.length} = "
        f"{positions:,} positions ({report['distinct_targets']:,} distinct targets), "
        f"{args.device} ({report['device']}), {torch.get_num_threads()} thread(s)"
    )
    baseline = f"chunked_ce chunk={args.chunks[0]}"
    for label, (name, options) in cases(args, item_log_q).items():
        if name == "ce" and ce_bytes > fraction * free:
            report["cases"][label] = {"skipped": "does not fit", "estimated_bytes": ce_bytes}
            print(
                f"{label:28s} skipped: needs ~{ce_bytes / 1e9:.1f} GB (logits, log-softmax and "
                f"their gradients, {CE_BYTES_PER_LOGIT} B x P x (N + 1)), "
                f"{free / 1e9:.1f} GB available"
            )
            continue
        step(name, states[:1], items, targets[:1], options, seed=0)  # warm-up
        try:
            with PeakMemory(device) as memory:
                runs = [
                    step(name, states, items, targets, options, seed)
                    for seed in range(args.repeats)
                ]
        except torch.OutOfMemoryError as error:  # the estimate was too optimistic
            report["cases"][label] = {"failed": str(error).splitlines()[0]}
            print(f"{label:28s} failed: {report['cases'][label]['failed']}")
            states.grad, items.grad = None, None
            continue
        seconds = statistics.median(run[0] for run in runs)
        entry = {
            "seconds": round(seconds, 4),
            "positions_per_second": round(positions / seconds, 1),
            "peak_memory_growth_mb": round(memory.growth_mb, 1),
            "loss": round(runs[0][1], 5),
        }
        report["cases"][label] = entry
    reference = report["cases"][baseline]["positions_per_second"]
    for label, entry in report["cases"].items():
        if "seconds" not in entry:
            continue
        entry["speed_vs_chunked_ce"] = round(entry["positions_per_second"] / reference, 2)
        print(
            f"{label:28s} {entry['seconds']:9.3f} s {entry['positions_per_second']:11,.0f} "
            f"positions/s x{entry['speed_vs_chunked_ce']:<7} "
            f"peak +{entry['peak_memory_growth_mb']:,.0f} MB  loss {entry['loss']:.4f}"
        )
    out = Path(args.out or f"benchmarks/results/train_scale_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
