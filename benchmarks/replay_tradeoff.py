"""What a shorter replay costs: NDCG@10 and latency against ``max_replay``, per ODE solver.

    python benchmarks/replay_tradeoff.py [--run-dir runs/demo/deepm3] [--windows 25 50 100 200]
        [--solvers euler rk4] [--users 0] [--batch 64] [--threads 1]

Every test user of the run (``--users N``: the first N) is sent as a new user would be: their
raw events before the test target, ``at`` = the target's time when the run predicts at the
target's time (else no ``at``: the state after the last event, as its evaluation scored it),
k = 10, seen items excluded. The requests go through ``Recommender.recommend_many`` in batches
of ``--batch`` (what the server does with a batch of concurrent replays), once per
(``max_replay``, solver); within each batch of users the settings take turns, so load on the
machine hits them alike. Per setting: NDCG@10 of the test targets, its paired difference from
the longest window's (95% interval, normal approximation over users) and the latency of a batch
(median, p95, ms). Prints a table; writes ``--out`` (default
``benchmarks/results/replay_tradeoff_cpu.json``) with the machine, its load and the git commit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loopback import command, cpu_run, shown  # noqa: E402

from deepm3.recommend.loading import load_run  # noqa: E402
from deepm3.recommend.recommender import Recommender  # noqa: E402
from deepm3.recommend.requests import Recommendation, Request  # noqa: E402
from deepm3.train.rundir import git_commit  # noqa: E402

K = 10


def test_requests(recommender: Recommender, users: int) -> tuple[list[Request], list[str]]:
    """One request per test user (raw events before the target) and the target's raw id."""
    data = recommender.data
    events, positions = data.events, data.split.test_pos
    evolve = recommender.plan.options.predict_at == "target_time"
    requests, targets = [], []
    for user in np.flatnonzero(positions > 0):
        start = events.offsets[user]
        target = start + positions[user]
        items = events.item_ids[events.items[start:target]].tolist()
        times = events.timestamps[start:target].tolist()
        at = int(events.timestamps[target]) if evolve else None
        requests.append(Request(events=tuple(zip(items, times, strict=True)), at=at, k=K))
        targets.append(str(events.item_ids[events.items[target]]))
        if len(requests) == users:
            break
    return requests, targets


def ndcg(answer: Recommendation, target: str) -> float:
    """NDCG@10 of one answer: 1 / log2(rank + 1) where the target is in its top 10, else 0."""
    if not isinstance(answer, Recommendation) or target not in answer.items:
        return 0.0
    return 1.0 / math.log2(answer.items.index(target) + 2)


def measure(run_dir: str, windows: list[int], solvers: list[str], users: int, batch: int):
    loaded = load_run(run_dir, device="cpu")
    settings = [(window, solver) for solver in solvers for window in windows]
    recommenders = {
        window: Recommender(loaded, max_replay=window, batch_size=batch) for window in windows
    }
    requests, targets = test_requests(recommenders[windows[0]], users)
    gains = {setting: [] for setting in settings}
    seconds = {setting: [] for setting in settings}
    for number, start in enumerate(range(0, len(requests), batch)):
        chunk = requests[start : start + batch]
        rotated = settings[number % len(settings) :] + settings[: number % len(settings)]
        for window, solver in rotated:
            solved = [Request(r.user, r.events, r.at, r.k, solver) for r in chunk]
            started = time.perf_counter()
            answers = recommenders[window].recommend_many(solved)
            seconds[window, solver].append(time.perf_counter() - started)
            targets_here = targets[start : start + batch]
            gains[window, solver].extend(map(ndcg, answers, targets_here))
    rows = []
    for window, solver in settings:
        values = np.array(gains[window, solver])
        reference = np.array(gains[max(windows), solver])
        difference = values - reference
        half = 1.96 * difference.std(ddof=1) / math.sqrt(len(difference))
        times = 1000 * np.array(seconds[window, solver])
        rows.append({
            "max_replay": window, "solver": solver, "ndcg@10": round(float(values.mean()), 5),
            "difference": round(float(difference.mean()), 5),
            "difference_95": [round(float(difference.mean() - half), 5),
                              round(float(difference.mean() + half), 5)],
            "relative": round(float(difference.mean() / reference.mean()), 4),
            "batch_median_ms": round(float(np.median(times)), 2),
            "batch_p95_ms": round(float(np.percentile(times, 95)), 2),
        })  # fmt: skip
    lengths = np.array([len(request.events) for request in requests])
    recommender = recommenders[windows[0]]
    test = json.loads((Path(run_dir) / "metrics.json").read_text())["test"]["ndcg@10"]
    return {
        "run_dir": shown(run_dir), "model": recommender.name, "own_solver": recommender.own_solver,
        "max_len": recommender.max_len, "users": len(requests), "batch": batch,
        "history_events_median": int(np.median(lengths)),
        "history_share_over": {w: round(float((lengths > w).mean()), 3) for w in windows},
        "run_test_ndcg@10": round(test, 5), "rows": rows,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default="runs/demo/deepm3")
    parser.add_argument("--windows", nargs="+", type=int, default=[25, 50, 100, 200])
    parser.add_argument("--solvers", nargs="+", default=["euler", "rk4"])
    parser.add_argument("--users", type=int, default=0, help="the first N test users (0: all)")
    parser.add_argument("--batch", type=int, default=64, help="requests per recommend_many")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/replay_tradeoff_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    started = time.perf_counter()
    result = measure(args.run_dir, args.windows, args.solvers, args.users, args.batch)
    payload = {
        "command": command(),
        "machine": cpu_run(args.threads, load),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "seconds": round(time.perf_counter() - started, 1),
        **result,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(
        f"{result['model']} ({result['own_solver']}-trained), {result['users']} test users, "
        f"median history {result['history_events_median']} events, run's test NDCG@10 "
        f"{result['run_test_ndcg@10']}; batches of {result['batch']}, load {load[0]:.1f}"
    )
    print(f"{'solver':<6} {'max_replay':>10} {'NDCG@10':>8} {'vs longest [95%]':>28} "
          f"{'batch ms p50':>12} {'p95':>7}")  # fmt: skip
    for row in result["rows"]:
        low, high = row["difference_95"]
        print(
            f"{row['solver']:<6} {row['max_replay']:>10} {row['ndcg@10']:>8.4f} "
            f"{row['difference']:>+8.4f} [{low:+.4f}, {high:+.4f}] {row['relative']:>+6.1%} "
            f"{row['batch_median_ms']:>12.1f} {row['batch_p95_ms']:>7.1f}"
        )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
