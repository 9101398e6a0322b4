"""Euler, RK4 and ``solver=auto`` on a run's test users: accuracy and latency, one curve.

    python scripts/analysis/solver_auto.py runs/demo/deepm3 --out results/ml1m/serving

Every test user is sent as one request through :meth:`Recommender.recommend_many` (the path
``deepm3 recommend`` and ``deepm3 serve`` take), with the events before their test event as
history, k=10, history items excluded: the evaluator's full-ranking protocol, so Euler's
NDCG@10 here equals the run's test NDCG@10. ``auto`` answers with Euler and re-solves with RK4
the requests whose normalised score entropy exceeds a threshold (no latency budget here, so
the threshold alone decides); the thresholds are quantiles of the Euler entropies, so the
curve runs from no request refined to all of them. Latency is the wall time of one
``recommend_many`` call per batch of ``--batch`` requests, one CPU thread.

Writes ``solver_auto.csv``, ``solver_auto.md``, ``solver_auto.png`` and ``provenance.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from deepm3.portable import portable_command, portable_path  # noqa: E402
from deepm3.recommend import Recommender, parse_request  # noqa: E402
from deepm3.reporting.text import markdown  # noqa: E402
from deepm3.train.rundir import provenance, write_json  # noqa: E402

REFINED_SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def test_requests(rec: Recommender, limit: int) -> tuple[list, np.ndarray]:
    """One request per test user (their events before the test event) and the target ids."""
    events, split = rec.data.events, rec.data.split
    users = np.flatnonzero(split.test_pos >= 0)[: limit or None]
    requests, targets = [], []
    for user in users:
        start, position = events.offsets[user], split.test_pos[user]
        ids = events.item_ids[events.items[start : start + position]]
        times = events.timestamps[start : start + position]
        pairs = [[str(i), int(t)] for i, t in zip(ids, times, strict=True)]
        requests.append({"events": pairs, "k": 10})
        targets.append(events.item_ids[events.items[start + position]])
    return requests, np.array(targets)


def measure(rec: Recommender, requests: list, targets: np.ndarray, solver: str, batch: int):
    """NDCG@10 and HR@10 per user, share answered by RK4, and seconds per batch."""
    parsed = [parse_request({**r, "solver": solver}) for r in requests]
    gains, rk4, seconds = [], 0, []
    for start in range(0, len(parsed), batch):
        began = time.perf_counter()
        answers = rec.recommend_many(parsed[start : start + batch])
        seconds.append(time.perf_counter() - began)
        for answer, target in zip(answers, targets[start : start + batch], strict=True):
            rank = answer.items.index(target) if target in answer.items else None
            gains.append(0.0 if rank is None else 1.0 / np.log2(rank + 2))
            rk4 += answer.solver == "rk4"
    gains = np.array(gains)
    return gains, rk4 / len(parsed), np.array(seconds)


def bootstrap(values: np.ndarray, seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="results/ml1m/serving")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--users", type=int, default=0, help="first N test users (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rec = Recommender.from_run(
        args.run_dir, data_dir=args.data_dir, device="cpu", batch_size=args.batch
    )
    rec.auto_budget_ms = 1e9  # the threshold alone decides (the server adds a budget)
    requests, targets = test_requests(rec, args.users)
    uncertainty = rec.uncertainty([parse_request(r) for r in requests])
    rows = []
    euler_gains = None
    settings = [("euler", None), ("rk4", None)]
    settings += [("auto", float(np.quantile(uncertainty, 1 - s))) for s in REFINED_SHARES[1:-1]]
    for solver, threshold in settings:
        if threshold is not None:
            rec.auto_threshold = threshold
        measure(rec, requests[: args.batch], targets[: args.batch], solver, args.batch)  # warm
        gains, share, seconds = measure(rec, requests, targets, solver, args.batch)
        euler_gains = gains if solver == "euler" else euler_gains
        low, high = bootstrap(gains - euler_gains)
        rows.append(
            {
                "solver": solver if threshold is None else f"auto@{threshold:.4f}",
                "threshold": threshold,
                "refined_by_rk4": round(share, 4),
                "ndcg@10": round(float(gains.mean()), 4),
                "hr@10": round(float((gains > 0).mean()), 4),
                "ndcg_vs_euler": round(float((gains - euler_gains).mean()), 5),
                "ndcg_vs_euler_ci": f"[{low:+.5f}, {high:+.5f}]",
                "ms_per_batch_median": round(1000 * float(np.median(seconds)), 2),
                "ms_per_batch_p95": round(1000 * float(np.quantile(seconds, 0.95)), 2),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "solver_auto.csv", index=False)
    header = (
        f"Run `{args.run_dir}` ({rec.name}, trained with solver={rec.model.options.solver}), "
        f"{len(requests)} test users, batches of {args.batch}, 1 CPU thread "
        f"(load average {load:.2f} at start). `ndcg_vs_euler`: paired mean difference "
        "[bootstrap 95% CI].\n\n"
    )
    (out / "solver_auto.md").write_text(header + markdown(table) + "\n")
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(table["ms_per_batch_median"], table["ndcg@10"], "o-", color="tab:blue")
    for _, row in table.iterrows():
        axis.annotate(
            f"{row['solver'].split('@')[0]} {row['refined_by_rk4']:.0%} rk4",
            (row["ms_per_batch_median"], row["ndcg@10"]),
            fontsize=7,
        )
    axis.set_xlabel(f"median ms per batch of {args.batch} requests (1 CPU thread)")
    axis.set_ylabel("test NDCG@10")
    axis.set_title("Euler, RK4 and auto (Euler, then RK4 for uncertain requests)")
    figure.tight_layout()
    figure.savefig(out / "solver_auto.png", dpi=120)
    record = provenance(rec.data.stats, None, "cpu")
    record.update(
        command=portable_command(["python", *sys.argv]),
        run_dir=portable_path(str(Path(args.run_dir).absolute())),
        run_config=json.loads((Path(args.run_dir) / "config.json").read_text()),
        run_provenance=json.loads((Path(args.run_dir) / "provenance.json").read_text()),
        load_average_at_start=load,
    )
    write_json(out / "provenance.json", record)
    print(f"written: {out}/solver_auto.md, .csv, .png, provenance.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
