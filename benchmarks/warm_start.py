"""What ``deepm3 serve --warm`` costs at start: seconds until it answers, and memory per user.

    python benchmarks/warm_start.py [--run-dir runs/demo/deepm3] [--repeats 2] [--threads 1]
        [--max-replay N]

Starts ``deepm3 serve RUN_DIR`` as a subprocess, with and without ``--warm`` in turns
(``--repeats`` times each), and polls ``GET /health`` until it answers: the seconds from launch
to the first answer, the server's resident memory then (``VmRSS`` of its process), and the state
cache it reports (users, bytes). Memory per warmed user is the difference in resident memory
between the two starts over the users warmed, next to the cache's own count of its bytes; that
difference also holds what the batched replays freed but the allocator kept, so the same warm
is measured in this process too, resident memory before and after it with freed heap returned
to the system (``malloc_trim``): what the cache really keeps per user. Writes
``--out`` (default ``benchmarks/results/warm_start_cpu.json``) with the machine and its load.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loopback import command, cpu_run, shown  # noqa: E402

from deepm3.recommend import Recommender  # noqa: E402
from deepm3.train.rundir import git_commit  # noqa: E402


def free_port() -> int:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        return listening.getsockname()[1]


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_once(run_dir: str, warm: bool, threads: int, replay: list[str]) -> dict:
    """Launch, wait for /health, measure, stop."""
    port = free_port()
    command = [sys.executable, "-m", "deepm3", "serve", run_dir, "--port", str(port), *replay]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    server = subprocess.Popen(
        [*command, *(["--warm"] if warm else [])],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited: {server.stderr.read()[-500:]}")
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                break
            except httpx.TransportError:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        return {
            "warm": warm, "seconds_to_answer": round(seconds, 2),
            "resident_mb": round(resident_bytes(server.pid) / 1e6, 1),
            "known_users": health["known_users"], "cached_users": health["cache"]["users"],
            "cache_mb": round(health["cache"]["bytes"] / 1e6, 2),
        }  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


def retained_in_process(run_dir: str, options: dict) -> dict:
    """Resident memory kept per warmed user once the replays' freed memory is returned."""
    recommender = Recommender.from_run(run_dir, device="cpu", **options)
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    gc.collect(), trim(0)
    before = resident_bytes(os.getpid())
    warmed = recommender.warm()
    peak = resident_bytes(os.getpid())
    gc.collect(), trim(0)
    after = resident_bytes(os.getpid())
    users = max(warmed["users"], 1)
    return {
        "users": warmed["users"], "warm_seconds": round(warmed["seconds"], 2),
        "resident_kb_per_user_before_trim": round((peak - before) / 1000 / users, 2),
        "resident_kb_per_user_after_trim": round((after - before) / 1000 / users, 2),
        "cache_kb_per_user": round(warmed["bytes"] / 1000 / users, 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default="runs/demo/deepm3")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-replay", type=int, help="default: the server's default")
    parser.add_argument("--out", default="benchmarks/results/warm_start_cpu.json")
    args = parser.parse_args()
    replay = [] if args.max_replay is None else ["--max-replay", str(args.max_replay)]
    options = {} if args.max_replay is None else {"max_replay": args.max_replay}
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    starts = [
        start_once(args.run_dir, warm, args.threads, replay)
        for _ in range(args.repeats)
        for warm in (False, True)
    ]
    cold = [start for start in starts if not start["warm"]]
    warm = [start for start in starts if start["warm"]]
    users = warm[0]["cached_users"]
    extra_mb = np.median([s["resident_mb"] for s in warm]) - np.median(
        [s["resident_mb"] for s in cold]
    )
    summary = {
        "cold_seconds_median": round(float(np.median([s["seconds_to_answer"] for s in cold])), 2),
        "warm_seconds_median": round(float(np.median([s["seconds_to_answer"] for s in warm])), 2),
        "users_warmed": users,
        "resident_kb_per_user": round(1000 * extra_mb / max(users, 1), 2),
        "cache_kb_per_user": round(1000 * warm[0]["cache_mb"] / max(users, 1), 2),
        "in_process": retained_in_process(args.run_dir, options),
    }
    payload = {
        "command": command(),
        "machine": cpu_run(args.threads, load),
        "git_commit": git_commit(),
        "run_dir": shown(args.run_dir),
        "max_replay": args.max_replay,
        "summary": summary,
        "starts": starts,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    for start in starts:
        print(json.dumps(start))
    print(json.dumps(summary))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
