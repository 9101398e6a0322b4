"""CPU latency of the exported scoring path: eager PyTorch vs TorchScript vs onnxruntime.

    python benchmarks/export_latency.py [--run-dirs runs/demo/deepm3 runs/demo/sasrec]
        [--batches 1 64] [--repeats 30] [--threads 1]

For each trained run: exports it (``deepm3 export``, both formats, into a temporary folder),
then times one call of the scoring path (history of ``max_len`` events -> scores of every item)
at each batch size on real test histories, queried 3 days after the last event for half the
rows: eager (the :class:`~deepm3.recommend.scoring_path.ScoringPath` module, what the recommender
computes), the TorchScript file (``torch.jit.load``) and the ONNX file (onnxruntime, CPU
provider, the same number of threads). Median and p95 of ``--repeats`` calls after 3 warm-up
calls, interleaved per repeat so that machine noise hits every path alike; ratios are to
eager measured in the same run. Writes ``--out`` (default
``benchmarks/results/export_latency_cpu.json``) with the machine, settings and git commit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from loopback import command, cpu_run, shown

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deepm3.recommend import Recommender  # noqa: E402
from deepm3.recommend.export import export_run, load_exported  # noqa: E402
from deepm3.recommend.scoring_path import example_inputs, scoring_path  # noqa: E402
from deepm3.train.rundir import git_commit  # noqa: E402


def time_calls(paths: dict, inputs: tuple, repeats: int) -> dict[str, dict[str, float]]:
    """Median and p95 ms of each path's call on ``inputs``, interleaved per repeat."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for repeat in range(repeats + 3):
        for name, call in paths.items():
            started = time.perf_counter()
            call(*inputs)
            if repeat >= 3:
                times[name].append(1000 * (time.perf_counter() - started))
    return {
        name: {"median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95))}
        for name, t in times.items()
    }


def measure(run_dir: Path, batches: list[int], repeats: int, scratch: Path) -> dict:
    recommender = Recommender.from_run(run_dir, device="cpu")
    eager = scoring_path(recommender)
    files = {fmt: export_run(run_dir, fmt, scratch / f"{run_dir.name}-{fmt}") for fmt in FORMATS}
    paths = {
        "eager": lambda *x: eager(*(torch.as_tensor(a) for a in x)),
        "torchscript": load_exported(files["torchscript"] / "model.pt"),
        "onnxruntime": load_exported(files["onnx"] / "model.onnx"),
    }
    rows = []
    with torch.no_grad():
        for batch in batches:
            data, query = example_inputs(recommender, batch)
            inputs = tuple(x.numpy() for x in (data.items, data.timestamps, data.time_scale, query))
            timed = time_calls(paths, inputs, repeats)
            base = timed["eager"]["median_ms"]
            for name, figures in timed.items():
                rows.append({
                    "batch": batch, "path": name, **{k: round(v, 3) for k, v in figures.items()},
                    "ratio_to_eager": round(figures["median_ms"] / base, 3),
                })  # fmt: skip
    manifest = json.loads((files["onnx"] / "manifest.json").read_text())
    return {
        "run_dir": shown(str(run_dir)),
        "model": recommender.name,
        "solver": manifest["solver"],
        "max_len": recommender.max_len,
        "num_items": recommender.data.num_items,
        "parity_max_abs_diff": {
            fmt: json.loads((files[fmt] / "manifest.json").read_text())["parity_max_abs_diff"]
            for fmt in FORMATS
        },
        "rows": rows,
    }


FORMATS = ("torchscript", "onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dirs", nargs="+", default=["runs/demo/deepm3", "runs/demo/sasrec"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/export_latency_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        results = [
            measure(Path(run_dir), args.batches, args.repeats, Path(scratch))
            for run_dir in args.run_dirs
        ]
    payload = {
        "command": command(),
        "machine": cpu_run(args.threads, load),  # the same keys as every CPU benchmark's
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "git_commit": git_commit(),
        "repeats": args.repeats,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{'model':<8} {'B':>4} {'path':<12} {'median ms':>10} {'p95 ms':>8} {'x eager':>8}")
    for result in results:
        for row in result["rows"]:
            print(
                f"{result['model']:<8} {row['batch']:>4} {row['path']:<12} "
                f"{row['median_ms']:>10.2f} {row['p95_ms']:>8.2f} {row['ratio_to_eager']:>8.2f}"
            )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
