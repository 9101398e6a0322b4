"""A soak of ``deepm3 serve``: a mix of good and bad traffic from 50 loopback clients for 60 s.

    python benchmarks/serve_soak.py --run-dir RUN [--data-dir DIR] [--clients 50] [--duration 60]

Starts the server for ``--run-dir`` in a subprocess (``loopback.start_server``: uvicorn, access
log off, ``--threads`` torch threads); ``--clients`` closed-loop clients (asyncio, one keep-alive
connection each, in this process) send ``POST /recommend`` back to back, each request drawn from
the mix (``--bad`` of them bad, the rest split evenly):

* ``known``: a known user of the run's data, no ``at`` (the time of their last event);
* ``later_at``: a known user at ``at`` = their last event + 1 hour to 30 days;
* ``new_user``: no user id, 5 to 50 consecutive events of a user of the data sent as raw
  (item, time) pairs, ``at`` = the last one + 1 to 72 hours;
* ``bad_*``: one of :data:`BAD_CASES` (malformed JSON, an empty body, unknown items only, ``at``
  before the last event or not a number, no user and no events, an unknown key, user or ``k``,
  unsorted events, an event that is not a pair), each of which must be answered 4xx.

A warm-up of ``--warmup`` seconds runs the same mix first and is not recorded. Then the measured
window: the server's RSS (``/proc/PID/status``) and ``/metrics`` are read with no request in
flight at its start and at its end, and the RSS once a second in between. The bookkeeping
(``soak_checks.py``) gives: responses 5xx (goal 0), every bad request 4xx, latency per kind
(client side), RSS start and end (flat within 10%), and ``/metrics`` counts against the
clients' counts. Writes ``--out`` (JSON, with the machine, its load average at the start and
the end, and the run) and a latency-over-time plot next to it (``soak_plot.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soak_checks
import soak_plot
import torch
from loopback import (
    REPO,
    Connection,
    free_port,
    load_average,
    machine,
    shown,
    start_server,
    user_queries,
)

from deepm3.recommend import Recommender
from deepm3.train.rundir import read_record

GOOD_KINDS = ("known", "later_at", "new_user")
BAD_CASES = (
    "bad_malformed_json", "bad_empty_body", "bad_unknown_items", "bad_at_before_last_event",
    "bad_at_not_a_number", "bad_no_user_no_events", "bad_unknown_key", "bad_unknown_user",
    "bad_k", "bad_unsorted_events", "bad_event_not_a_pair",
)  # fmt: skip
HOUR = 3600


class Mix:
    """Draws request bodies from the run's data: known users with their last event time, and
    windows of raw (item, time) events of those users for the ``new_user`` kind."""

    def __init__(self, recommender: Recommender, bad_share: float, windows: int, seed: int):
        events = recommender.data.events
        self.known = user_queries(recommender)
        self.bad_share = bad_share
        rng = np.random.default_rng(seed)
        self.windows = []
        for user in rng.integers(1, len(events.offsets) - 1, windows):
            start, end = int(events.offsets[user]), int(events.offsets[user + 1])
            length = int(rng.integers(5, 51))
            first = int(rng.integers(start, max(start + 1, end - length + 1)))
            rows = slice(first, min(end, first + length))
            pairs = zip(
                events.item_ids[events.items[rows]].tolist(),
                events.timestamps[rows].tolist(),
                strict=True,
            )
            self.windows.append([list(pair) for pair in pairs])

    def kind(self, rng: random.Random) -> str:
        if rng.random() < self.bad_share:
            return rng.choice(BAD_CASES)
        return rng.choice(GOOD_KINDS)

    def body(self, kind: str, rng: random.Random) -> bytes:
        """The raw body of one request of ``kind``."""
        user, last = rng.choice(self.known)
        events = rng.choice(self.windows)
        payload: object = {
            "known": {"user": user},
            "later_at": {"user": user, "at": last + rng.randint(HOUR, 30 * 24 * HOUR)},
            "new_user": {"events": events, "at": events[-1][1] + rng.randint(HOUR, 72 * HOUR)},
            "bad_unknown_items": {"events": [[f"no-such-item-{rng.random()}", last]]},
            "bad_at_before_last_event": {"user": user, "at": last - rng.randint(1, 30 * HOUR)},
            "bad_at_not_a_number": {"user": user, "at": "tomorrow"},
            "bad_no_user_no_events": {"at": last, "k": 5},
            "bad_unknown_key": {"user": user, "usr": user},
            "bad_unknown_user": {"user": f"no-such-user-{rng.random()}"},
            "bad_k": {"user": user, "k": rng.choice([0, -1, 10**6, "ten", True])},
            "bad_unsorted_events": {"events": [[events[0][0], last + HOUR], [events[-1][0], last]]},
            "bad_event_not_a_pair": {"events": [events[0][:1]]},
        }.get(kind)
        if kind == "bad_malformed_json":
            return json.dumps({"user": user, "at": last})[: rng.randint(1, 10)].encode()
        if kind == "bad_empty_body":
            return b""
        return json.dumps(payload).encode()


async def client(port: int, mix: Mix, rng: random.Random, start: float, until: float, out: list):
    """One closed-loop client until ``until``: appends (second, kind, status, latency)."""
    connection = Connection("127.0.0.1", port)
    while (now := time.perf_counter()) < until:
        kind = mix.kind(rng)
        try:
            status, _ = await connection.post_bytes("/recommend", mix.body(kind, rng))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            connection.close()
            status = 0
        out.append((now - start, kind, status, time.perf_counter() - now))
    connection.close()


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def sample_rss(pid: int, start: float, until: float, out: list) -> None:
    while (now := time.perf_counter()) < until:
        out.append((round(now - start, 2), rss_bytes(pid)))
        await asyncio.sleep(1.0)


async def window(port: int, mix: Mix, args: argparse.Namespace, seconds: float, seed: int, pid):
    """All clients for ``seconds``; (records, RSS samples) once every client has stopped."""
    records: list = []
    samples: list = []
    start = time.perf_counter()
    rngs = [random.Random(seed * 1000 + number) for number in range(args.clients)]
    await asyncio.gather(
        sample_rss(pid, start, start + seconds, samples),
        *(client(port, mix, rng, start, start + seconds, records) for rng in rngs),
    )
    return records, samples


def metrics(url: str) -> dict:
    return soak_checks.server_counts(httpx.get(f"{url}/metrics", timeout=30).text)


def soak(args: argparse.Namespace, mix: Mix) -> dict:
    """Warm-up, then the measured window, against one server; what the checks need."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.run_dir, port, threads=args.threads, data_dir=args.data_dir)
    try:
        loaded_rss = rss_bytes(server.pid)
        if args.warmup > 0:
            asyncio.run(window(port, mix, args, args.warmup, args.seed + 1, server.pid))
        before, rss_start, load_start = metrics(url), rss_bytes(server.pid), load_average()
        measured = window(port, mix, args, args.duration, args.seed, server.pid)
        records, samples = asyncio.run(measured)
        after, rss_end, load_end = metrics(url), rss_bytes(server.pid), load_average()
        health = httpx.get(f"{url}/health", timeout=30).json()
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "records": records, "rss_samples": samples, "loaded_rss": loaded_rss,
        "rss_start": rss_start, "rss_end": rss_end, "load_start": load_start,
        "load_end": load_end, "server": soak_checks.counts_between(before, after),
        "health": health, "alive": alive,
    }  # fmt: skip


def run_description(run_dir: str) -> dict:
    """Which run was served: its model, settings and test metrics, as recorded."""
    config = read_record(Path(run_dir) / "config.json")
    recorded = Path(run_dir) / "provenance.json"
    provenance = read_record(recorded) if recorded.exists() else {}
    metrics_file = Path(run_dir) / "metrics.json"
    test = json.loads(metrics_file.read_text()).get("test", {}) if metrics_file.exists() else {}
    return {
        "path": shown(run_dir),
        "model": config["model_name"],
        "dataset": config["data"]["dataset"],
        "epochs": config["train"]["epochs"],
        "max_len": config["data"]["max_len"],
        "solver": config["model"].get("solver"),
        "test_ndcg@10": round(test["ndcg@10"], 4) if "ndcg@10" in test else None,
        "trained_by": provenance.get("command"),
        "trained_at_commit": provenance.get("git_commit"),
        "data_fingerprint": provenance.get("data_fingerprint"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--data-dir", help="the run's raw data (default: its own setting)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds, not recorded")
    parser.add_argument("--bad", type=float, default=0.10, help="share of bad requests")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server too")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/serve_soak_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {**machine(), "clients": args.clients, "duration_s": args.duration}
    report |= {"warmup_s": args.warmup, "bad_share": args.bad, "seed": args.seed}
    report |= {"run": run_description(args.run_dir), "data_dir": args.data_dir}
    report |= {"kinds": {"good": list(GOOD_KINDS), "bad": list(BAD_CASES)}}
    recommender = Recommender.from_run(args.run_dir, data_dir=args.data_dir)
    mix = Mix(recommender, args.bad, windows=2000, seed=args.seed)
    del recommender
    result = soak(args, mix)
    records = result["records"]
    report["load_average_at_start"] = result["load_start"]
    report["load_average_at_end"] = result["load_end"]
    report["server_alive_at_end"] = result["alive"]
    report["summary"] = soak_checks.summarise(records)
    report["metrics"] = soak_checks.compare_metrics(records, result["server"])
    report["rss"] = soak_checks.rss_flat(result["rss_start"], result["rss_end"])
    report["rss"]["after_loading_mib"] = round(result["loaded_rss"] / 2**20, 1)
    report["health_at_end"] = result["health"]
    report["series"] = {
        "per_second": soak_checks.per_second(records, int(np.ceil(args.duration))),
        "rss_mib": [[t, round(b / 2**20, 1)] for t, b in result["rss_samples"]],
    }
    summary = report["summary"]
    print(json.dumps({
        "requests": summary["requests"], "outcomes": summary["outcomes"],
        "latency_by_group": summary["latency_by_group"], "rss": report["rss"],
        "metrics_agree": report["metrics"]["agree"], "load": [
            report["load_average_at_start"], report["load_average_at_end"]],
    }, indent=1))  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    soak_plot.plot(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
