"""What the serving benchmarks share (``serve_load.py``, ``serve_soak.py``): ``deepm3 serve`` in
a subprocess on a free loopback port, a light keep-alive HTTP client, the run's known users,
latency percentiles and a description of the machine."""

from __future__ import annotations

import asyncio
import json
import os
import platform
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

from deepm3.portable import portable_command, portable_path  # noqa: E402
from deepm3.recommend import Recommender  # noqa: E402
from deepm3.train.rundir import git_commit  # noqa: E402

SERVER = (
    "import json, sys; from deepm3.recommend.server import serve; serve(**json.loads(sys.argv[1]))"
)


def percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    if not len(values):
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "p99_ms": round(p99, 2)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    run_dir: str,
    port: int,
    *,
    threads: int,
    data_dir: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_replay: int | None = None,
) -> subprocess.Popen:
    """The server in a subprocess (its pid is the server's own), once ``/health`` answers;
    ``max_replay`` None: the server's default."""
    options = {
        "run_dir": run_dir, "port": port, "log_level": "warning", "access_log": False,
        "data_dir": data_dir, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
    }  # fmt: skip
    if max_replay is not None:
        options["max_replay"] = max_replay
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(options)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not answer /health within 120 s")


def user_queries(recommender: Recommender) -> list[tuple[str, int]]:
    """(raw user id, last event time) of every user of the run's data."""
    events = recommender.data.events
    users = events.user_ids[1:].tolist()
    last = events.timestamps[events.offsets[2:] - 1].tolist()
    return list(zip(users, last, strict=True))


class Connection:
    """A minimal HTTP/1.1 keep-alive client for JSON POSTs on loopback.

    Not httpx: on this 2-core machine ``httpx.AsyncClient`` spent about 10 ms of CPU per request
    with 50 concurrent connections (a whole core at ~100 requests/s), so the load generator, not
    the server, set the latency. This client costs ~0.3 ms per request."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: object) -> tuple[int, bytes]:
        """(status, body) of ``payload`` sent as JSON."""
        return await self.post_bytes(path, json.dumps(payload).encode())

    async def post_bytes(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of a raw body (malformed JSON too); reconnects once the server has
        closed the connection."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        answer = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection") == "close":
            self.writer.close()
        return int(lines[0].split()[1]), answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def shown(path: str | None) -> str | None:
    """``path`` as committed records show it (:mod:`deepm3.portable`), relative to the
    repository."""
    return None if path is None else portable_path(str(Path(path).absolute()), REPO)


def command() -> str:
    """This benchmark's command line as committed records show it."""
    return portable_command(["python", *sys.argv], REPO)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_run(threads: int, load_at_start: tuple[float, ...]) -> dict:
    """The CPU a one-sitting measurement ran on, its threads and the load average at its start
    (``os.getloadavg()`` taken then) and now, at its end."""
    return {
        "device": "cpu",
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": load_average(),
    }


def machine() -> dict:
    return {
        "device": "cpu",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "git_commit": git_commit(),
    }
