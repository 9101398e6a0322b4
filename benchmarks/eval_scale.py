"""Full-ranking evaluation at Amazon Books scale (370k items): seconds per 1,000 users, memory.

    python benchmarks/eval_scale.py [--items 370000] [--users 2000] [--device cpu]

Writes a synthetic interaction file with ``--items`` items (each in a few events, so all of them
survive preparation; k-core off), prepares it, and ranks ``--users`` test users (``eval_users``,
a fixed-seed sample) against every item with untrained models: once with the library's bounded
chunks (``max_scores``, default 2**22 scores, 11 users at a time at 370k items) and once with
one unbounded chunk of ``eval_batch_size`` users (the baseline, measured in the same run). Both
must give the same ranks (up to exact ties that float rounding can flip; counted). Prints seconds
per 1,000 users and the peak resident memory growth of each (Linux ``/proc`` peak, reset before
each); ``--out`` writes the JSON (``benchmarks/results/eval_scale_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepm3.config import DataConfig, EvalConfig  # noqa: E402
from deepm3.data.prepare import prepare  # noqa: E402
from deepm3.eval.evaluator import evaluate, users_per_chunk  # noqa: E402
from deepm3.models import build_model, model_options  # noqa: E402
from deepm3.train.loop import model_scorer  # noqa: E402


def synthetic_file(path: Path, users: int, items: int, events_per_user: int, seed: int) -> Path:
    """``users`` x ``events_per_user`` events over ``items`` items (every item used), one day
    apart on average, as a user_id,item_id,timestamp CSV."""
    rng = np.random.default_rng(seed)
    count = users * events_per_user
    item = np.concatenate([np.arange(items), rng.integers(0, items, max(0, count - items))])
    rng.shuffle(item)
    user = np.repeat(np.arange(users), events_per_user)
    steps = rng.exponential(86400, size=count).astype(np.int64)
    start = np.repeat(rng.integers(10**9, 1.3 * 10**9, users), events_per_user)
    within = np.cumsum(steps.reshape(users, events_per_user), axis=1).ravel()
    frame = pd.DataFrame({"user_id": user, "item_id": item[:count], "timestamp": start + within})
    frame.to_csv(path, index=False)
    return path


def reset_peak_rss() -> None:
    """Linux: restart the peak resident size (VmHWM) from the current size."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def timed(scorer, data, config: EvalConfig, device: str) -> tuple[float, float, np.ndarray]:
    """Seconds, peak memory growth (MB) and ranks of one evaluation."""
    reset_peak_rss()
    before = rss_mb("VmRSS")
    started = time.perf_counter()
    result = evaluate(scorer, data, "test", config, device)
    seconds = time.perf_counter() - started
    return seconds, rss_mb("VmHWM") - before, result.per_user["rank"].to_numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=370_000)
    parser.add_argument("--users", type=int, default=2_000, help="users ranked (eval_users)")
    parser.add_argument("--data-users", type=int, default=60_000, help="users in the data")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--models", default="sasrec,deepm3")
    parser.add_argument("--max-scores", type=int, default=EvalConfig.max_scores)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON file (default benchmarks/results/eval_scale_<device>)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        path = synthetic_file(Path(folder) / "events.csv", args.data_users, args.items, 8, 0)
        os.environ["DEEPM3_CACHE"] = folder
        data = prepare(DataConfig(dataset=str(path), kcore=0, max_len=args.max_len))
    print(
        f"{data.num_users:,} users, {data.num_items:,} items; ranking {args.users:,} test users, "
        f"width {args.width}, max_len {args.max_len}, device {args.device}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    bounded = EvalConfig(eval_users=args.users, max_scores=args.max_scores)
    unbounded = EvalConfig(eval_users=args.users, max_scores=2**62)
    report = {
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),  # other work on the machine
        "items": data.num_items,
        "users_in_data": data.num_users,
        "users_ranked": args.users,
        "max_len": args.max_len,
        "width": args.width,
        "max_scores": args.max_scores,
        "bounded_users_per_chunk": users_per_chunk(bounded, data.num_items),
        "unbounded_users_per_chunk": users_per_chunk(unbounded, data.num_items),
        "models": {},
    }
    for name in args.models.split(","):
        torch.manual_seed(0)
        options = model_options(name, {"hidden_size": args.width})
        model = build_model(name, data.num_items, options, data.max_len).to(args.device).eval()
        scorer = model_scorer(model)
        evaluate(scorer, data, "test", EvalConfig(eval_users=64), args.device)  # warm-up
        chunk_s, chunk_mb, ranks = timed(scorer, data, bounded, args.device)
        base_s, base_mb, base_ranks = timed(scorer, data, unbounded, args.device)
        differ = np.abs(ranks - base_ranks)  # float rounding may flip an exact tie
        entry = {
            "seconds_per_1000_users": round(1000 * chunk_s / args.users, 3),
            "baseline_seconds_per_1000_users": round(1000 * base_s / args.users, 3),
            "speed_ratio_vs_baseline": round(base_s / chunk_s, 2),
            "peak_rss_growth_mb": round(chunk_mb, 1),
            "baseline_peak_rss_growth_mb": round(base_mb, 1),
            "users_with_another_rank": int((differ > 0).sum()),
            "max_rank_difference": int(differ.max()),
            "hours_for_every_user": round(chunk_s / args.users * data.num_users / 3600, 2),
        }
        report["models"][name] = entry
        print(
            f"{name}: {entry['seconds_per_1000_users']:.2f} s / 1,000 users with chunks of "
            f"{report['bounded_users_per_chunk']} users; one chunk of "
            f"{report['unbounded_users_per_chunk']}: {entry['baseline_seconds_per_1000_users']:.2f}"
            f" s (ratio {entry['speed_ratio_vs_baseline']:.2f}); peak memory growth "
            f"{chunk_mb:.0f} MB vs {base_mb:.0f} MB; ranks differ (float ties) for "
            f"{entry['users_with_another_rank']} users by <= {entry['max_rank_difference']}"
        )
    out = Path(args.out or f"benchmarks/results/eval_scale_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
