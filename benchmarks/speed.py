"""Training-step and inference speed of every model, side by side, in one process.

    python benchmarks/speed.py --quick            # < 2 minutes on 2 CPU cores (make bench)
    python benchmarks/speed.py                    # every model, B in {1, 256}, T in {50, 200}
    PYTHONPATH=. python3 benchmarks/speed.py --device cuda --out benchmarks/results/h100.json

A training step is forward + full-softmax cross-entropy over all items + backward + AdamW;
inference is forward + scoring the last state against every item, without gradients. Both are
timed after warm-up, synchronised on GPUs, as median and 95th percentile over repeats. Memory is
the CUDA peak on GPUs; on the CPU it is the size of the tensors saved for backward in one step
(the activation memory that grows with B and T). Ratios are against SASRec measured in the same
run, and of DeepM3-Euler against DeepM3-RK4; the fast DeepM3 recurrence is also compared with the
eager reference. Numbers are not asserted anywhere: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepm3.models import build_model, model_options  # noqa: E402
from deepm3.models.contract import count_parameters, item_scores  # noqa: E402
from deepm3.train.device import device_name, select_device  # noqa: E402
from deepm3.train.losses import sequence_loss  # noqa: E402

NUM_ITEMS = 3706  # MovieLens-1M
VARIANTS: dict[str, tuple[str, dict]] = {
    "sasrec": ("sasrec", {}),
    "tisasrec": ("tisasrec", {}),
    "gru4rec": ("gru4rec", {}),
    "deepm3-euler": ("deepm3", {"solver": "euler"}),
    "deepm3-euler-eager": ("deepm3", {"solver": "euler", "implementation": "eager"}),
    "deepm3-rk4": ("deepm3", {"solver": "rk4"}),
    "deepm3-rk4-eager": ("deepm3", {"solver": "rk4", "implementation": "eager"}),
    "deepm3-dopri5": ("deepm3", {"solver": "dopri5"}),
    "deepm3-euler-bounded": ("deepm3", {"solver": "euler", "lipschitz": "bounded"}),
    "deepm3-euler-none": ("deepm3", {"solver": "euler", "lipschitz": "none"}),
    "deepm3-no-ode": ("deepm3", {"ode": "none"}),
}
ADAPTIVE = {"deepm3-dopri5"}
ADAPTIVE_LIMIT = 256 * 50  # events per batch up to which the adaptive reference is timed
QUICK_VARIANTS = [
    "sasrec",
    "tisasrec",
    "gru4rec",
    "deepm3-euler",
    "deepm3-euler-eager",
    "deepm3-rk4",
]
QUICK_SETTINGS = [(256, 200), (1, 200)]
FULL_SETTINGS = [(1, 50), (1, 200), (256, 50), (256, 200)]


def synthetic_batch(batch: int, length: int, device: torch.device, seed: int = 0):
    """Full-length rows with ML-1M-like gaps: half of them zero (ties), the rest hours to days."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=generator)
    seconds = torch.randint(0, 2 * 86_400, (batch, length), generator=generator)
    seconds[torch.rand(batch, length, generator=generator) < 0.5] = 0
    timestamps = 978_300_000 + seconds.cumsum(1)
    gaps = torch.log1p(seconds.double() / 3600).float()
    gaps[:, 0] = 0
    targets = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=generator)
    return [t.to(device) for t in (items, timestamps, gaps, gaps.roll(-1, 1), targets)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function, repeats: int, warmup: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        function()
    _sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def saved_activation_bytes(model, inputs, targets) -> int:
    """Bytes of the tensors autograd saves for backward in one training step."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        states, _ = model(*inputs)
        sequence_loss("ce", states, model.item_embedding.weight, targets, 1)
    return total


def measure(variant: str, batch: int, length: int, device: torch.device, repeats: int) -> dict:
    name, options = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_model(name, NUM_ITEMS, model_options(name, options), length).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    items, timestamps, gaps, next_gaps, targets = synthetic_batch(batch, length, device)
    time_scale = torch.full((batch,), 3600, dtype=torch.int64, device=device)  # TiSASRec's unit
    inputs = (items, timestamps, gaps, next_gaps, time_scale)
    nfe = {}

    def train_step():
        model.train()
        states, aux = model(*inputs)
        loss = sequence_loss("ce", states, model.item_embedding.weight, targets, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        nfe["train"] = aux.get("nfe", 0)

    @torch.no_grad()
    def infer():
        model.eval()
        states, aux = model(*inputs)
        item_scores(states[:, -1], model.item_embedding)
        nfe["infer"] = aux.get("nfe", 0)

    heavy = batch * length >= 256 * 200
    # The heaviest setting (B=256, T=200) takes seconds per step on a CPU: fewer repeats there.
    train_times = _timed(train_step, max(1, repeats // (4 if heavy else 1)), 1, device)
    infer_times = _timed(infer, repeats, 2, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        train_step()
        memory = torch.cuda.max_memory_allocated(device)
    else:
        memory = saved_activation_bytes(model, inputs, targets)
    return {
        "model": variant,
        "batch": batch,
        "length": length,
        "train_ms": 1e3 * statistics.median(train_times),
        "train_p95_ms": 1e3 * _percentile(train_times, 0.95),
        "infer_ms": 1e3 * statistics.median(infer_times),
        "infer_p95_ms": 1e3 * _percentile(infer_times, 0.95),
        "train_events_per_s": batch * length / statistics.median(train_times),
        "memory_mb": memory / 2**20,
        "nfe_infer": nfe.get("infer", 0),
        "parameters": count_parameters(model)["total"],
        "repeats": len(train_times),
    }


def add_ratios(rows: list[dict]) -> None:
    index = {(r["model"], r["batch"], r["length"]): r for r in rows}
    for row in rows:
        key = row["batch"], row["length"]
        base = index.get(("sasrec", *key))
        if base:
            row["train_vs_sasrec"] = row["train_ms"] / base["train_ms"]
            row["infer_vs_sasrec"] = row["infer_ms"] / base["infer_ms"]
        eager = index.get((row["model"] + "-eager", *key))
        if eager:
            row["fast_speedup_train"] = eager["train_ms"] / row["train_ms"]
            row["fast_speedup_infer"] = eager["infer_ms"] / row["infer_ms"]
        if row["model"] == "deepm3-euler" and ("deepm3-rk4", *key) in index:
            rk4 = index[("deepm3-rk4", *key)]
            row["euler_vs_rk4_infer"] = row["infer_ms"] / rk4["infer_ms"]
            row["euler_vs_rk4_train"] = row["train_ms"] / rk4["train_ms"]
            row["euler_vs_rk4_nfe"] = row["nfe_infer"] / max(rk4["nfe_infer"], 1)


def format_table(rows: list[dict], header: str) -> str:
    def ratio(row, key):
        return f"{row[key]:.2f}" if key in row else "-"

    lines = [
        header,
        "| model | B | T | train ms (p95) | infer ms (p95) | events/s | mem MB | "
        "NFE | params | train/SASRec | infer/SASRec | fast/eager speed-up (train, infer) "
        "| Euler/RK4 infer (NFE) |",
        "|" + "---|" * 13,
    ]
    for row in rows:
        speedup = (
            f"{row['fast_speedup_train']:.2f}, {row['fast_speedup_infer']:.2f}"
            if "fast_speedup_train" in row
            else "-"
        )
        euler = (
            f"{row['euler_vs_rk4_infer']:.2f} ({row['euler_vs_rk4_nfe']:.2f})"
            if "euler_vs_rk4_infer" in row
            else "-"
        )
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['length']} | "
            f"{row['train_ms']:.1f} ({row['train_p95_ms']:.1f}) | "
            f"{row['infer_ms']:.2f} ({row['infer_p95_ms']:.2f}) | "
            f"{row['train_events_per_s']:,.0f} | {row['memory_mb']:.0f} | {row['nfe_infer']} | "
            f"{row['parameters']:,} | {ratio(row, 'train_vs_sasrec')} | "
            f"{ratio(row, 'infer_vs_sasrec')} | {speedup} | {euler} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer models and settings")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats (0: by mode)")
    parser.add_argument("--models", help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--out", help="JSON file to write (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    variants = (
        args.models.split(",")
        if args.models
        else (QUICK_VARIANTS if args.quick else list(VARIANTS))
    )
    settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    repeats = args.repeats or (4 if args.quick else 10)
    started = time.perf_counter()
    rows = []
    for batch, length in settings:
        for variant in variants:
            if variant in ADAPTIVE and batch * length > ADAPTIVE_LIMIT:
                continue  # dopri5 on 51,200 events per step ran > 10 minutes on the CPU
            rows.append(measure(variant, batch, length, device, repeats))
            print(
                f"  measured {variant} B={batch} T={length}: "
                f"train {rows[-1]['train_ms']:.1f} ms, infer {rows[-1]['infer_ms']:.2f} ms",
                file=sys.stderr,
            )
    add_ratios(rows)
    info = {
        "device": device_name(device),
        "torch": torch.__version__,
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "num_items": NUM_ITEMS,
        "loss": "full-softmax cross-entropy",
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
    }
    header = (
        f"device {info['device']}, torch {info['torch']}, float32, "
        f"{info['threads']} threads, {NUM_ITEMS} items"
    )
    print(format_table(rows, header))
    out = (
        Path(args.out)
        if args.out
        else (
            Path(__file__).parent
            / "results"
            / f"{device.type}{'-quick' if args.quick else ''}.json"
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    print(f"written: {out} ({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
