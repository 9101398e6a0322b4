"""What ``deepm3 serve`` tells Prometheus: requests and errors by endpoint and status, latency
by solver, and the micro-batches' sizes and times, in a registry per app (two apps in one
process, as in the tests, never share counts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

# Latency from 1 ms to 1 s, finest where the goal lies (a p99 under 50 ms)
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The app's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deepm3_http_requests", "HTTP requests answered", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "deepm3_errors", "Error answers (HTTP, and items of list bodies)",
            ["endpoint", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "deepm3_recommend_latency_seconds", "POST /recommend answered with 200, by solver",
            ["solver"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "deepm3_batch_size", "Requests per recommend_many call",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "deepm3_batch_seconds", "Seconds per recommend_many call",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


class CountResponses:
    """ASGI middleware: counts every response by endpoint (a path outside ``paths`` as
    ``other``, so clients cannot grow the label set) and status, and each error status as an
    error, whatever produced it (a handler, validation, a 404, an unexpected exception)."""

    def __init__(self, app: Any, metrics: Metrics, paths: Sequence[str]) -> None:
        self.app, self.metrics, self.paths = app, metrics, frozenset(paths)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # unless a response starts

        async def send_counted(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            endpoint = scope["path"] if scope["path"] in self.paths else "other"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(endpoint, str(status)).inc()
