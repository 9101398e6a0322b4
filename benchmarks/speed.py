"""Training-step and inference speed of every model, side by side, in one process.

    python benchmarks/speed.py --quick --threads 1   # make bench: 3 settings, models interleaved
    python benchmarks/speed.py                    # every model, B in {1, 256}, T in {50, 200}
    bash benchmarks/gpu.sh                        # on a GPU: with the accelerated recurrence

A training step is forward + full-softmax cross-entropy over all items + backward + AdamW;
inference is forward + scoring the last state against every item, without gradients. At each
setting (B, T) every model is built first, then timed interleaved (``interleave.py``): each
round runs one training step of every model (the order reversed every other round), after one
warm-up round; then inference likewise. Times are the median and 95th percentile over rounds,
synchronised on GPUs. A ratio is taken within each round and reported as the median over rounds
with its interquartile range, so a change of the machine's load between models does not move it:
against SASRec and against DeepM3 without the flow (the GRU alone, ``deepm3-no-ode``), of
DeepM3-Euler against DeepM3-RK4, and of the fast DeepM3 recurrence against the eager reference.
Memory is the CUDA peak on GPUs; on the CPU it is the size of the tensors saved for backward in
one step (the activation memory that grows with B and T). Numbers are not asserted anywhere:
this is a measurement, not a test.

Variants named ``-compiled``, ``-graph`` and ``-graph-compiled`` run DeepM3's recurrence through
a static loop of ``deepm3/models/loops.py`` (``model.implementation`` compile, cuda_graph,
compiled_cuda_graph; the graph loops on CUDA only); their first training and inference calls,
which compile or capture, are timed apart (``setup_s``), and their speed-ups are against both
the eager loop and the fused recurrence.
``field_weights_ms`` is the field's spectral normalisation with its backward, once per training
step. The run ends with the three target ratios of the GPU path (met or not), on any device;
the JSON is rewritten after every setting (B, T), and a failed variant is recorded, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speed_measure import NUM_ITEMS, measure_setting, rounds_for  # noqa: E402
from speed_report import (  # noqa: E402
    add_ratios,
    format_ratio_table,
    format_table,
    format_targets,
    target_ratios,
)
from variants import ACCELERATED, CUDA_ONLY, VARIANTS, card_name  # noqa: E402

from deepm3.train.device import device_name, select_device  # noqa: E402

ADAPTIVE = {"deepm3-dopri5"}
ADAPTIVE_LIMIT = 256 * 50  # events per batch up to which the adaptive reference is timed
QUICK_VARIANTS = [
    "sasrec",
    "tisasrec",
    "gru4rec",
    "deepm3-no-ode",
    "deepm3-euler",
    "deepm3-euler-eager",
    "deepm3-rk4",
    "deepm3-decay",
    "timeattn",
    "timeattn-flow",
]
QUICK_SETTINGS = [(256, 200), (1, 200), (256, 50)]
FULL_SETTINGS = [(1, 50), (1, 200), (256, 50), (256, 200)]
FIRST_SETTINGS = [(256, 200), (1, 200), (1, 50)]  # measured first: the targets' settings


def _settings(args: argparse.Namespace) -> list[tuple[int, int]]:
    if args.batches or args.lengths:
        batches = [int(b) for b in (args.batches or "1,256").split(",")]
        lengths = [int(t) for t in (args.lengths or "50,200").split(",")]
        settings = [(b, t) for b in batches for t in lengths]
    else:
        settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    return sorted(settings, key=lambda s: FIRST_SETTINGS.index(s) if s in FIRST_SETTINGS else 9)


def _measure_all(variants, settings, device, repeats, warmup, time_limit, save) -> tuple:
    """Rows, failures and skipped measurements, each passed to ``save`` after every setting; a
    failed variant does not stop the run."""
    rows, failures, skipped = [], [], []
    started = time.perf_counter()
    for batch, length in settings:
        chosen = []
        for variant in variants:
            if variant in ADAPTIVE and batch * length > ADAPTIVE_LIMIT:
                continue  # dopri5 on 51,200 events per step ran > 10 minutes on the CPU
            mode = ACCELERATED.get(variant, ("", "none"))[1]
            late = time_limit and time.perf_counter() - started > time_limit
            if late or (mode in CUDA_ONLY and device.type != "cuda"):
                skipped.append(f"{variant} B={batch} T={length}")
            else:
                chosen.append(variant)
        if not chosen:
            continue
        try:
            measured = measure_setting(chosen, batch, length, device, repeats, warmup, failures)
        except Exception as exc:  # noqa: BLE001 (a failure while timing loses this setting only)
            for variant in chosen:
                failures.append({"model": variant, "batch": batch, "length": length})
                failures[-1]["error"] = f"{type(exc).__name__}: {exc}"[:1000]
            traceback.print_exc()
            continue
        rows.extend(measured)
        save(rows, failures, skipped)
        for row in measured:
            print(
                f"  measured {row['model']} B={batch} T={length}: "
                f"train {row['train_ms']:.1f} ms, infer {row['infer_ms']:.2f} ms, "
                f"setup {row['setup_s']:.1f} s, field weights "
                f"{row['field_weights_ms']:.2f} ms",
                file=sys.stderr,
            )
    return rows, failures, skipped


def _record(args, device, started: float, load: list, rows, failures, skipped, complete) -> dict:
    """The JSON of a run so far: rows as measured; ratios and targets once it is complete.
    ``load``: the load averages (1, 5, 15 minutes) at the start; those at writing are added."""
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
        "timing": "interleaved rounds; ratios: median of per-round ratios, iqr: [q1, q3]",
        "repeats": args.repeats,
        "warmup_rounds": args.warmup,
        "load_average": {"start": load, "end": [round(x, 2) for x in os.getloadavg()]},
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
    parser.add_argument("--repeats", type=int, default=0, help="timed rounds (0: by mode)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
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
    started, load = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    args.repeats = args.repeats or (8 if args.quick else 15)

    def save(*measured, complete: bool = False) -> dict:  # after each setting: a killed run keeps
        record = _record(args, device, started, load, *measured, complete)
        out.write_text(json.dumps(record, indent=2) + "\n")
        return record

    settings, repeats = _settings(args), args.repeats
    measured = _measure_all(variants, settings, device, repeats, args.warmup, args.time_limit, save)
    record = save(*measured, complete=True)
    info, (rows, failures, skipped) = record["info"], measured
    rounds = ", ".join(
        f"B={b} T={t}: {'/'.join(map(str, rounds_for(repeats, b, t, device)))}" for b, t in settings
    )
    header = (
        f"device {info['device']}, torch {info['torch']}, float32, {info['threads']} threads, "
        f"{NUM_ITEMS} items; models interleaved, timed rounds (train/infer) {rounds} after "
        f"{args.warmup} warm-up; load average {load[0]} at the start, "
        f"{info['load_average']['end'][0]} at the end"
    )
    print(format_table(rows, header))
    print()
    print(format_ratio_table(rows, "Ratios: median of the per-round ratios [interquartile range]"))
    print()
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
