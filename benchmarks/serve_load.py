"""``deepm3 serve`` under load on loopback, and the incremental state against a full replay.

    python benchmarks/serve_load.py [--run-dir runs/demo/deepm3] [--clients 50] [--seconds 10]

1. HTTP load: starts the server for ``--run-dir`` in a subprocess (uvicorn, access log off,
   ``--threads`` torch threads), then ``--clients`` concurrent clients (asyncio, one keep-alive
   connection each, in this process; see ``loopback.Connection`` for why not httpx) send
   ``POST /recommend`` back to back for ``--seconds`` per solver (euler, rk4, auto; one second
   of warm-up each): a random known user of the run's data, ``at`` = their last event + 1 to 72
   hours, so the server replays the user's history (up to ``max_len`` events) per request.
   Then Euler again on ``--cached-users`` users whose states the server has cached (primed by
   ``POST /events``), so each request evolves a cached state instead. Records answers per
   second, client-side latency percentiles and errors, and from the server's ``/metrics`` its
   mean latency, mean batch size and mean batch time. The clients share the cores with the
   server.
2. In process (no HTTP), for history lengths ``--lengths`` (50, 200), one request at a time:
   (a) DeepM3 with a cached state of the first L - 1 events: ``add_events`` of event L
   (absorbed in one step), then a recommendation for that user (the cached state evolved to
   ``at``); (b) DeepM3 replaying all L events sent in the request; (c) SASRec
   (``--sasrec-run-dir``) replaying them. Ratios are to (a), measured in the same run; (a) and
   (b) must agree on the top 10 (both read every event here: ``max_replay=None``).

Writes ``--out`` (default ``benchmarks/results/serve_load_cpu.json``) with the machine, its load
average, the settings and the git commit.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from loopback import (
    REPO,
    Connection,
    free_port,
    load_average,
    machine,
    percentiles,
    shown,
    start_server,
    user_queries,
)
from prometheus_client.parser import text_string_to_metric_families

from deepm3.recommend import Recommender, parse_request

GOAL_P99_MS = 50.0
FRESH = itertools.count()  # ids of the fresh users of the in-process comparison


async def client(port, queries, solver, until, warm_until, latencies, errors, rng) -> None:
    """One client: requests back to back until ``until``; records after ``warm_until``."""
    connection = Connection("127.0.0.1", port)
    while (now := time.perf_counter()) < until:
        user, last = queries[rng.randrange(len(queries))]
        body = {"user": user, "at": last + rng.randint(3600, 72 * 3600), "solver": solver}
        try:
            status, _ = await connection.post("/recommend", body)
            failed = status != 200
        except (OSError, ValueError, asyncio.IncompleteReadError):
            connection.close()
            failed = True
        if now >= warm_until:
            (errors if failed else latencies).append(time.perf_counter() - now)
    connection.close()


def server_stats(url: str) -> dict[str, float]:
    """The server's cumulative counts and sums: batches, requests batched, seconds in
    batches, /recommend answers and their seconds (summed over solvers)."""
    names = {
        "deepm3_batch_size_count": "batches",
        "deepm3_batch_size_sum": "batched",
        "deepm3_batch_seconds_sum": "batch_seconds",
        "deepm3_recommend_latency_seconds_count": "answers",
        "deepm3_recommend_latency_seconds_sum": "answer_seconds",
    }
    stats = dict.fromkeys(names.values(), 0.0)
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name in names:
                stats[names[sample.name]] += sample.value
    return stats


async def load_phase(port: int, queries: list, solver: str, args: argparse.Namespace) -> dict:
    """``args.clients`` clients for one second of warm-up, then ``args.seconds`` measured."""
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    errors: list[float] = []
    warm_until = time.perf_counter() + 1.0
    until = warm_until + args.seconds
    rngs = [random.Random(args.seed * 1000 + number) for number in range(args.clients)]
    running = asyncio.gather(
        *(client(port, queries, solver, until, warm_until, latencies, errors, r) for r in rngs)
    )
    await asyncio.sleep(1.0)  # the warm-up, not counted
    before = await asyncio.to_thread(server_stats, url)
    await running
    after = await asyncio.to_thread(server_stats, url)
    delta = {key: after[key] - before[key] for key in after}
    return {
        "answers": len(latencies),
        "errors": len(errors),
        "qps": round(len(latencies) / args.seconds, 1),
        **percentiles(latencies),
        "server_mean_ms": round(1000 * delta["answer_seconds"] / max(delta["answers"], 1), 2),
        "mean_batch_size": round(delta["batched"] / max(delta["batches"], 1), 1),
        "mean_batch_ms": round(1000 * delta["batch_seconds"] / max(delta["batches"], 1), 2),
    }


def prime(port: int, queries: list) -> float:
    """``POST /events`` with no events for each user: the server replays their history once
    and caches the state. Returns the seconds taken."""
    started = time.perf_counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for user, _ in queries:
            http.post("/events", json={"user": user}).raise_for_status()
    return time.perf_counter() - started


def run_load(args: argparse.Namespace, queries: list) -> dict:
    """Every load phase against one server: each solver on cold users (the history replayed
    per request), then Euler on ``--cached-users`` users whose states the server has cached."""
    port = free_port()
    server = start_server(
        args.run_dir, port, threads=args.threads, data_dir=args.data_dir,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_replay=args.max_replay,
    )  # fmt: skip
    phases = {}
    try:
        for solver in args.solvers.split(","):
            phases[solver] = asyncio.run(load_phase(port, queries, solver, args))
            print(f"{solver}: {json.dumps(phases[solver])}", flush=True)
        if args.cached_users:
            cached = queries[: args.cached_users]
            seconds = prime(port, cached)
            phase = asyncio.run(load_phase(port, cached, "euler", args))
            phases["euler_cached"] = {"users": len(cached), "prime_seconds": round(seconds, 1)}
            phases["euler_cached"] |= phase
            print(f"euler, cached states: {json.dumps(phases['euler_cached'])}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return phases


def raw_history(recommender: Recommender, user: int, length: int) -> list[list]:
    """The first ``length`` events of a user of the run's data, as [raw item, unix time]."""
    events = recommender.data.events
    rows = slice(events.offsets[user], events.offsets[user] + length)
    items = events.item_ids[events.items[rows]].tolist()
    return [[item, int(t)] for item, t in zip(items, events.timestamps[rows].tolist(), strict=True)]


def answer_seconds(recommender: Recommender, payload: dict) -> tuple[float, list[str]]:
    started = time.perf_counter()
    answer = recommender.recommend_many([parse_request(payload)])[0]
    return time.perf_counter() - started, answer.items


def incremental_vs_replay(
    deepm3: Recommender, sasrec: Recommender | None, length: int, samples: int
) -> dict:
    """One request at a time, for a user's first ``length`` events: (a) add the last one to a
    cached state of the ``length - 1`` before it and recommend, (b) replay all ``length``
    events, (c) the same replay with SASRec. Each user (one with at least ``length`` events)
    is one sample; three users warm up first."""
    sizes = np.diff(deepm3.data.events.offsets)
    users = [int(u) for u in np.flatnonzero(sizes >= length)[: samples + 3]]
    times: dict[str, list[float]] = {"cached": [], "replay": [], "sasrec_replay": []}
    same = 0
    for number, user in enumerate(users):
        history = raw_history(deepm3, user, length)
        at = history[-1][1] + 3600
        key = f"bench-{next(FRESH)}"  # a user the data does not know, not cached yet
        deepm3.add_events(key, history[:-1])  # primes the cache: one full replay, not timed
        started = time.perf_counter()
        deepm3.add_events(key, history[-1:])
        _, cached_items = answer_seconds(deepm3, {"user": key, "at": at, "solver": "euler"})
        cached = time.perf_counter() - started
        replay, replay_items = answer_seconds(
            deepm3, {"events": history, "at": at, "solver": "euler"}
        )
        sasrec_replay = answer_seconds(sasrec, {"events": history})[0] if sasrec else float("nan")
        if number >= 3:
            times["cached"].append(cached)
            times["replay"].append(replay)
            times["sasrec_replay"].append(sasrec_replay)
            same += cached_items == replay_items
    medians = {name: float(np.median(values)) * 1000 for name, values in times.items()}
    return {
        "samples": len(times["cached"]),
        **{f"{name}_median_ms": round(ms, 2) for name, ms in medians.items()},
        **{
            f"{name}_p95_ms": round(float(np.percentile(v, 95)) * 1000, 2)
            for name, v in times.items()
        },
        "replay_over_cached": round(medians["replay"] / medians["cached"], 2),
        "sasrec_replay_over_cached": round(medians["sasrec_replay"] / medians["cached"], 2),
        "same_top_k_cached_and_replay": f"{same}/{len(times['cached'])}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default=str(REPO / "runs/demo/deepm3"))
    parser.add_argument("--sasrec-run-dir", default=str(REPO / "runs/demo/sasrec"))
    parser.add_argument("--data-dir", help="the runs' raw data (default: their own setting)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per solver")
    parser.add_argument("--solvers", default="euler,rk4,auto")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument(
        "--max-replay", type=int, help="events replayed (the server's --max-replay)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server too")
    parser.add_argument("--cached-users", type=int, default=500, help="0: no cached phase")
    parser.add_argument("--lengths", default="50,200", help="history lengths, in process")
    parser.add_argument("--samples", type=int, default=50, help="users per history length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/serve_load_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {**machine(), "run_dir": shown(args.run_dir), "clients": args.clients}
    report |= {"sasrec_run_dir": shown(args.sasrec_run_dir), "data_dir": shown(args.data_dir)}
    report |= {"seconds": args.seconds, "max_batch": args.max_batch}
    report |= {"max_wait_ms": args.max_wait_ms, "max_replay": args.max_replay}
    report |= {"load": {}, "incremental": {}}
    deepm3 = Recommender.from_run(args.run_dir, data_dir=args.data_dir)
    report["model"] = deepm3.name
    report["load"] = run_load(args, user_queries(deepm3))
    report["load_average_after_load"] = load_average()
    # in process, every event is replayed (max_replay=None): the cached state absorbed all of
    # them, so the two paths must agree whatever the server's --max-replay
    everything = Recommender.from_run(args.run_dir, data_dir=args.data_dir, max_replay=None)
    sasrec = None
    if args.sasrec_run_dir:
        sasrec = Recommender.from_run(args.sasrec_run_dir, data_dir=args.data_dir, max_replay=None)
    for length in (int(text) for text in args.lengths.split(",")):
        entry = incremental_vs_replay(everything, sasrec, length, args.samples)
        report["incremental"][str(length)] = entry
        print(f"history {length}: {json.dumps(entry)}", flush=True)
    euler = report["load"].get("euler")
    if euler:
        report["goal"] = {
            "statement": f"p99 < {GOAL_P99_MS:g} ms at {args.clients} clients with Euler",
            "p99_ms": euler["p99_ms"],
            "met": bool(euler["p99_ms"] < GOAL_P99_MS and not euler["errors"]),
        }
        print(f"goal: {json.dumps(report['goal'])}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
