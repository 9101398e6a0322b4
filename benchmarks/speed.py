"""Training-step and inference speed of every model, side by side, in one process.

    python benchmarks/speed.py --quick            # < 2 minutes on 2 CPU cores (make bench)
    python benchmarks/speed.py                    # every model, B in {1, 256}, T in {50, 200}
    bash benchmarks/gpu.sh                        # on a GPU: with the accelerated recurrence

A training step is forward + full-softmax cross-entropy over all items + backward + AdamW;
inference is forward + scoring the last state against every item, without gradients. Both are
timed after warm-up, synchronised on GPUs, as median and 95th percentile over repeats. Memory is
the CUDA peak on GPUs; on the CPU it is the size of the tensors saved for backward in one step
(the activation memory that grows with B and T). Ratios are against SASRec measured in the same
run, and of DeepM3-Euler against DeepM3-RK4; the fast DeepM3 recurrence is also compared with the
eager reference. Numbers are not asserted anywhere: this is a measurement, not a test.

Variants named ``-compiled``, ``-graph`` and ``-graph-compiled`` run DeepM3's recurrence through
a static loop of ``deepm3/models/loops.py`` (``model.implementation`` compile, cuda_graph,
compiled_cuda_graph; the graph loops on CUDA only); their first training and inference calls,
which compile or capture, are timed apart (``setup_s``), and their speed-ups are against both
the eager loop and the fused recurrence.
``field_weights_ms`` is the field's spectral normalisation with its backward, once per training
step. The run ends with the three target ratios of the GPU path (met or not), on any device;
the JSON is rewritten after every measurement, and a failed variant is recorded, not fatal.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speed_report import add_ratios, format_table, format_targets, target_ratios  # noqa: E402
from variants import ACCELERATED, CUDA_ONLY, VARIANTS, build_variant, card_name  # noqa: E402

from deepm3.models.contract import count_parameters, item_scores  # noqa: E402
from deepm3.ode.field import VectorField  # noqa: E402
from deepm3.train.device import device_name, select_device  # noqa: E402
from deepm3.train.losses import sequence_loss  # noqa: E402

NUM_ITEMS = 3706  # MovieLens-1M
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
FIRST_SETTINGS = [(256, 200), (1, 200), (1, 50)]  # measured first: the targets' settings


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
        sequence_loss("ce", model.readout(states), model.item_embedding.weight, targets, 1)
    return total


def field_weights_ms(model, device: torch.device, repeats: int) -> float:
    """Milliseconds to build the field's effective weights and backpropagate through them, as
    every training step does (the spectral norms are SVDs, which synchronise a GPU with the
    host); 0 for a model without a field."""
    fields = [module for module in model.modules() if isinstance(module, VectorField)]
    if not fields:
        return 0.0

    def once():
        weights = fields[0].weights()
        (weights.w_in.sum() + weights.w_out.sum()).backward()

    return 1e3 * statistics.median(_timed(once, repeats, 1, device))


def measure(variant: str, batch: int, length: int, device: torch.device, repeats: int) -> dict:
    model = build_variant(variant, NUM_ITEMS, length, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    items, timestamps, gaps, next_gaps, targets = synthetic_batch(batch, length, device)
    time_scale = torch.full((batch,), 3600, dtype=torch.int64, device=device)  # TiSASRec's unit
    inputs = (items, timestamps, gaps, next_gaps, time_scale)
    nfe = {}

    def train_step():
        model.train()
        states, aux = model(*inputs)
        loss = sequence_loss("ce", model.readout(states), model.item_embedding.weight, targets, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        nfe["train"] = aux.get("nfe", 0)

    @torch.no_grad()
    def infer():
        model.eval()
        states, aux = model(*inputs)
        item_scores(model, states[:, -1])
        nfe["infer"] = aux.get("nfe", 0)

    started = time.perf_counter()
    train_step()  # the first calls compile or capture an accelerated recurrence
    infer()
    _sync(device)
    setup = time.perf_counter() - started
    # The heaviest setting (B=256, T=200) takes seconds per step on a CPU, and the adaptive
    # solver as long on any device: fewer repeats there.
    heavy = variant in ADAPTIVE or (device.type == "cpu" and batch * length >= 256 * 200)
    train_times = _timed(train_step, max(1, repeats // (4 if heavy else 1)), 1, device)
    infer_times = _timed(infer, max(1, repeats // (4 if variant in ADAPTIVE else 1)), 1, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        train_step()
        memory = torch.cuda.max_memory_allocated(device)
    else:
        memory = saved_activation_bytes(model, inputs, targets)
    model.train()
    field_ms = field_weights_ms(model, device, repeats)
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
        "setup_s": setup,
        "field_weights_ms": field_ms,
    }


def _settings(args: argparse.Namespace) -> list[tuple[int, int]]:
    if args.batches or args.lengths:
        batches = [int(b) for b in (args.batches or "1,256").split(",")]
        lengths = [int(t) for t in (args.lengths or "50,200").split(",")]
        settings = [(b, t) for b in batches for t in lengths]
    else:
        settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    return sorted(settings, key=lambda s: FIRST_SETTINGS.index(s) if s in FIRST_SETTINGS else 9)


def _measure_all(variants, settings, device, repeats, time_limit, save) -> tuple[list, list, list]:
    """Rows, failures and skipped measurements, each passed to ``save`` as it comes; a failed
    variant does not stop the run."""
    rows, failures, skipped = [], [], []
    started = time.perf_counter()
    for batch, length in settings:
        for variant in variants:
            if variant in ADAPTIVE and batch * length > ADAPTIVE_LIMIT:
                continue  # dopri5 on 51,200 events per step ran > 10 minutes on the CPU
            mode = ACCELERATED.get(variant, ("", "none"))[1]
            late = time_limit and time.perf_counter() - started > time_limit
            if late or (mode in CUDA_ONLY and device.type != "cuda"):
                skipped.append(f"{variant} B={batch} T={length}")
                continue
            try:
                rows.append(measure(variant, batch, length, device, repeats))
            except Exception as exc:  # noqa: BLE001 (one failed variant must not end the run)
                failures.append({"model": variant, "batch": batch, "length": length})
                failures[-1]["error"] = f"{type(exc).__name__}: {exc}"[:1000]
                print(f"  FAILED {variant} B={batch} T={length}:", file=sys.stderr)
                traceback.print_exc()
                continue
            save(rows, failures, skipped)
            print(
                f"  measured {variant} B={batch} T={length}: "
                f"train {rows[-1]['train_ms']:.1f} ms, infer {rows[-1]['infer_ms']:.2f} ms, "
                f"setup {rows[-1]['setup_s']:.1f} s, field weights "
                f"{rows[-1]['field_weights_ms']:.2f} ms",
                file=sys.stderr,
            )
    return rows, failures, skipped


def _record(args, device, started: float, rows, failures, skipped, complete: bool) -> dict:
    """The JSON of a run so far: rows as measured; ratios and targets once it is complete."""
    if complete:
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
        "complete": complete,
        "skipped": skipped,
    }
    targets = target_ratios(rows) if complete else []
    return {"info": info, "rows": rows, "targets": targets, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer models and settings")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats (0: by mode)")
    names = ", ".join([*VARIANTS, *ACCELERATED])
    parser.add_argument("--models", help="comma-separated subset of: " + names)
    parser.add_argument("--batches", help="comma-separated batch sizes (default 1,256)")
    parser.add_argument("--lengths", help="comma-separated history lengths (default 50,200)")
    parser.add_argument("--time-limit", type=float, default=0, help="seconds; then skip the rest")
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
    unknown = [v for v in variants if v not in VARIANTS and v not in ACCELERATED]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; valid: {names}")
    # one compilation per solver, batch and grad mode, more than Dynamo's default 8 per function
    torch._dynamo.config.recompile_limit = 64
    default = f"{card_name(device)}{'-quick' if args.quick else ''}.json"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / default
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def save(*measured, complete: bool = False) -> dict:  # after every row: a killed run keeps them
        record = _record(args, device, started, *measured, complete)
        out.write_text(json.dumps(record, indent=2) + "\n")
        return record

    repeats = args.repeats or (4 if args.quick else 10)
    measured = _measure_all(variants, _settings(args), device, repeats, args.time_limit, save)
    record = save(*measured, complete=True)
    info, (rows, failures, skipped) = record["info"], measured
    header = (
        f"device {info['device']}, torch {info['torch']}, float32, "
        f"{info['threads']} threads, {NUM_ITEMS} items, {repeats} repeats"
    )
    print(format_table(rows, header))
    print(format_targets(record["targets"], info["device"]))
    for failure in failures:
        print(f"FAILED {failure['model']} B={failure['batch']} T={failure['length']}: ", end="")
        print(failure["error"])
    if skipped:
        print(f"skipped ({len(skipped)}: CUDA only, or past --time-limit): {', '.join(skipped)}")
    print(f"written: {out} ({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
