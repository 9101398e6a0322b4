"""The soak's bookkeeping (``serve_soak.py``), pure functions on what the clients recorded and
what the server's ``/metrics`` said: no server, no clock, so a test can feed them fake data.

A record is one request as a client saw it: ``(second, kind, status, latency_s)``; ``second``
counts from the start of the measured window, ``kind`` names what was sent (a bad request's
kind starts with ``bad_``), ``status`` is the HTTP status or 0 when no answer came back (the
connection failed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

BAD_PREFIX = "bad_"
RSS_TOLERANCE = 0.10  # "flat": the end within 10% of the start

Record = tuple[float, str, int, float]


def is_bad(kind: str) -> bool:
    return kind.startswith(BAD_PREFIX)


def outcome(kind: str, status: int) -> str:
    """What a response means: ``ok`` (a good request answered 200), ``refused`` (a bad one
    answered 4xx), ``server_error`` (any 5xx), ``no_answer`` (status 0), or ``wrong`` (a good
    request not answered 200, a bad one answered neither 4xx nor 5xx)."""
    if status == 0:
        return "no_answer"
    if status >= 500:
        return "server_error"
    if is_bad(kind):
        return "refused" if 400 <= status < 500 else "wrong"
    return "ok" if status == 200 else "wrong"


def latency_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max in milliseconds (None without samples)."""
    if not len(seconds):
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    values = np.asarray(seconds, dtype=float) * 1000
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2), "max_ms": round(float(values.max()), 2),
    }  # fmt: skip


def group_of(kind: str) -> str:
    """Bad requests of every case pool into one latency group, ``bad``."""
    return "bad" if is_bad(kind) else kind


def summarise(records: Iterable[Record]) -> dict:
    """Counts and latency per kind and per group, the outcomes, and the verdicts: no 5xx, every
    bad request 4xx, every good one 200, every request answered."""
    records = list(records)
    by_kind: dict[str, list[Record]] = {}
    for record in records:
        by_kind.setdefault(record[1], []).append(record)
    kinds = {}
    for kind, rows in sorted(by_kind.items()):
        statuses = Counter(status for _, _, status, _ in rows)
        kinds[kind] = {
            "sent": len(rows),
            "statuses": {str(status): count for status, count in sorted(statuses.items())},
            **latency_ms([latency for _, _, status, latency in rows if status]),
        }
    groups = {}
    for group in sorted({group_of(kind) for kind in by_kind}):
        rows = [r for r in records if group_of(r[1]) == group and r[2]]
        groups[group] = {"answered": len(rows), **latency_ms([r[3] for r in rows])}
    outcomes = Counter(outcome(kind, status) for _, kind, status, _ in records)
    return {
        "requests": len(records),
        "bad_requests": sum(is_bad(r[1]) for r in records),
        "outcomes": dict(sorted(outcomes.items())),
        "responses_5xx": outcomes["server_error"],
        "no_5xx": outcomes["server_error"] == 0,
        "every_bad_4xx": all(outcome(k, s) == "refused" for _, k, s, _ in records if is_bad(k)),
        "every_good_200": all(outcome(k, s) == "ok" for _, k, s, _ in records if not is_bad(k)),
        "every_request_answered": outcomes["no_answer"] == 0,
        "latency_by_group": groups,
        "by_kind": kinds,
    }


def server_counts(metrics_text: str, endpoint: str = "/recommend") -> dict:
    """From ``/metrics`` text: the endpoint's responses by status, its error answers by
    status, and the number of 200 answers in the latency histogram (summed over solvers)."""
    counts: dict = {"requests": Counter(), "errors": Counter(), "latency_count": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "deepm3_recommend_latency_seconds_count":
                counts["latency_count"] += sample.value
            elif labels.get("endpoint") != endpoint:
                continue
            elif sample.name == "deepm3_http_requests_total":
                counts["requests"][labels["status"]] += sample.value
            elif sample.name == "deepm3_errors_total":
                counts["errors"][labels["status"]] += sample.value
    return counts


def counts_between(before: dict, after: dict) -> dict:
    """What the server counted between two :func:`server_counts`, as integers."""
    return {
        "requests": _nonzero(after["requests"] - before["requests"]),
        "errors": _nonzero(after["errors"] - before["errors"]),
        "latency_count": int(round(after["latency_count"] - before["latency_count"])),
    }


def _nonzero(counter: Counter) -> dict[str, int]:
    return {status: int(round(n)) for status, n in sorted(counter.items()) if round(n)}


def compare_metrics(records: Iterable[Record], server: dict) -> dict:
    """The clients' counts against the server's (:func:`counts_between` over the same
    window): responses by status, error answers (status >= 400) by status, and 200 answers
    against the latency histogram's count. ``agree`` only when all three match exactly."""
    statuses = Counter(str(status) for _, _, status, _ in records if status)
    client = {
        "requests": dict(sorted(statuses.items())),
        "errors": {s: n for s, n in sorted(statuses.items()) if int(s) >= 400},
        "latency_count": statuses.get("200", 0),
    }
    mismatches = [key for key in client if client[key] != server[key]]
    return {"agree": not mismatches, "mismatches": mismatches, "client": client, "server": server}


def rss_flat(start_bytes: int, end_bytes: int, tolerance: float = RSS_TOLERANCE) -> dict:
    """Whether the server's resident memory stayed within ``tolerance`` of where it started."""
    change = (end_bytes - start_bytes) / start_bytes
    return {
        "start_mib": round(start_bytes / 2**20, 1), "end_mib": round(end_bytes / 2**20, 1),
        "change": round(change, 4), "tolerance": tolerance, "flat": abs(change) <= tolerance,
    }  # fmt: skip


def per_second(records: Iterable[Record], seconds: int) -> dict[str, dict[str, list]]:
    """Per group and per whole second of the window: answers, p50 and p99 in ms (None in a
    second without answers), for the plot."""
    series: dict[str, dict[str, list]] = {}
    rows = [r for r in records if r[2]]
    for group in sorted({group_of(r[1]) for r in rows}):
        bins: list[list[float]] = [[] for _ in range(seconds)]
        for second, kind, _, latency in rows:
            if group_of(kind) == group and 0 <= int(second) < seconds:
                bins[int(second)].append(latency * 1000)
        series[group] = {
            "answers": [len(b) for b in bins],
            "p50_ms": [round(float(np.percentile(b, 50)), 2) if b else None for b in bins],
            "p99_ms": [round(float(np.percentile(b, 99)), 2) if b else None for b in bins],
        }
    return series
