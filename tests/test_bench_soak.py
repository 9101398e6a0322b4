"""The soak's bookkeeping (``benchmarks/soak_checks.py``) on fake records and on /metrics text
from the server's own Prometheus registry; and (slow) a few seconds of a real soak."""

from __future__ import annotations

import json
import sys

import pytest
from prometheus_client import generate_latest
from synthetic import REPO, SMALL_RUN, write_synthetic_csv

from deepm3.config import load_config
from deepm3.recommend.monitoring import Metrics
from deepm3.train.run import run

sys.path.insert(0, str(REPO / "benchmarks"))

import serve_soak  # noqa: E402
import soak_checks  # noqa: E402


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("known", 200, "ok"),
        ("new_user", 422, "wrong"),  # a good request refused
        ("later_at", 503, "server_error"),
        ("known", 0, "no_answer"),
        ("bad_malformed_json", 400, "refused"),
        ("bad_unknown_items", 422, "refused"),
        ("bad_k", 200, "wrong"),  # a bad request answered as if it were fine
        ("bad_k", 302, "wrong"),
        ("bad_at_not_a_number", 500, "server_error"),
    ],
)
def test_outcome_of_each_response(kind, status, expected):
    assert soak_checks.outcome(kind, status) == expected


def records_of(statuses: dict[str, list[int]]) -> list[tuple]:
    """Fake records: for each kind, one per status, latencies 1, 2, 3, ... ms."""
    rows = []
    for kind, codes in statuses.items():
        rows += [(0.1 * n, kind, s, (n + 1) / 1000) for n, s in enumerate(codes)]
    return rows


def test_summary_verdicts_and_latency():
    clean = records_of({"known": [200] * 100, "bad_k": [422] * 3, "bad_empty_body": [400]})
    summary = soak_checks.summarise(clean)
    assert summary["requests"] == 104 and summary["bad_requests"] == 4
    assert summary["no_5xx"] and summary["every_bad_4xx"] and summary["every_good_200"]
    # latencies 1..100 ms: numpy's linear p99 lies at rank 98.01 -> 99.01 ms; max 100 ms
    assert summary["latency_by_group"]["known"]["p99_ms"] == pytest.approx(99.01)
    assert summary["latency_by_group"]["known"]["max_ms"] == pytest.approx(100.0)
    # the bad cases pool into one group: 1, 2, 3 ms (bad_k) and 1 ms (empty body)
    assert summary["latency_by_group"]["bad"]["answered"] == 4
    assert summary["latency_by_group"]["bad"]["p50_ms"] == pytest.approx(1.5)
    assert summary["by_kind"]["bad_k"]["statuses"] == {"422": 3}

    broken = records_of({"known": [200, 500, 0], "bad_k": [422, 200], "new_user": [422]})
    summary = soak_checks.summarise(broken)
    assert summary["responses_5xx"] == 1 and not summary["no_5xx"]
    assert not summary["every_bad_4xx"] and not summary["every_good_200"]
    assert not summary["every_request_answered"]
    assert summary["outcomes"] == {
        "no_answer": 1, "ok": 1, "refused": 1, "server_error": 1, "wrong": 2
    }  # fmt: skip
    # a request that got no answer has no latency
    assert summary["latency_by_group"]["known"]["answered"] == 2


def exposition(responses: dict[tuple[str, int], int], answered: int) -> str:
    """/metrics text from the server's own registry after ``responses`` (endpoint, status)
    -> count and ``answered`` latency observations, counted as its middleware and handler do."""
    metrics = Metrics()
    for (endpoint, status), count in responses.items():
        for _ in range(count):
            metrics.requests.labels(endpoint, str(status)).inc()
            if status >= 400:
                metrics.errors.labels(endpoint, str(status)).inc()
    for number in range(answered):
        metrics.latency.labels("euler" if number % 2 else "rk4").observe(0.01)
    return generate_latest(metrics.registry).decode()


def test_metrics_against_client_counts():
    start = soak_checks.server_counts(exposition({("/recommend", 200): 7, ("/health", 200): 2}, 7))
    records = records_of({"known": [200] * 5, "bad_k": [422, 422], "bad_empty_body": [400]})
    # the window: 5 more 200s, two 422s and one 400 on /recommend; /metrics and 404s elsewhere
    # must not count
    end_responses = {
        ("/recommend", 200): 12, ("/recommend", 422): 2, ("/recommend", 400): 1,
        ("/metrics", 200): 3, ("other", 404): 4, ("/health", 200): 2,
    }  # fmt: skip
    end = soak_checks.server_counts(exposition(end_responses, 12))
    server = soak_checks.counts_between(start, end)
    assert server == {
        "requests": {"200": 5, "400": 1, "422": 2}, "errors": {"400": 1, "422": 2},
        "latency_count": 5,
    }  # fmt: skip
    assert soak_checks.compare_metrics(records, server)["agree"]

    # the server counted one 422 the clients never saw
    extra = {**end_responses, ("/recommend", 422): 3}
    server = soak_checks.counts_between(start, soak_checks.server_counts(exposition(extra, 12)))
    verdict = soak_checks.compare_metrics(records, server)
    assert not verdict["agree"] and verdict["mismatches"] == ["requests", "errors"]
    # a 200 the latency histogram missed
    server = soak_checks.counts_between(
        start, soak_checks.server_counts(exposition(end_responses, 11))
    )
    verdict = soak_checks.compare_metrics(records, server)
    assert not verdict["agree"] and verdict["mismatches"] == ["latency_count"]
    # a request with no answer is not expected in the server's counts
    server = soak_checks.counts_between(start, end)
    assert soak_checks.compare_metrics([*records, (1.0, "known", 0, 0.5)], server)["agree"]


@pytest.mark.parametrize(
    ("start", "end", "flat"),
    [(100, 100, True), (100, 110, True), (100, 111, False), (100, 90, True), (100, 89, False)],
)
def test_rss_flat_within_ten_percent(start, end, flat):
    verdict = soak_checks.rss_flat(start * 2**20, end * 2**20)
    assert verdict["flat"] is flat
    assert (verdict["start_mib"], verdict["end_mib"]) == (start, end)


def test_per_second_series():
    records = [(0.2, "known", 200, 0.010), (0.7, "known", 200, 0.030), (1.5, "bad_k", 422, 0.002)]
    records.append((1.6, "known", 0, 9.0))  # no answer: not in the series
    series = soak_checks.per_second(records, 3)
    assert series["known"] == {
        "answers": [2, 0, 0], "p50_ms": [20.0, None, None], "p99_ms": [29.8, None, None]
    }  # fmt: skip
    assert series["bad"]["answers"] == [0, 1, 0]


@pytest.mark.slow
def test_a_short_real_soak(tmp_path):
    """A tiny run served for a couple of seconds: every good request 200, every bad one 4xx,
    the server's counts equal the clients'."""
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=40)
    config = load_config(None, [*SMALL_RUN, "epochs=1"], base={"data": {"dataset": str(csv)}})
    run("deepm3", config, tmp_path / "run")
    out = tmp_path / "soak.json"
    argv = ["--run-dir", str(tmp_path / "run"), "--clients", "4", "--duration", "2"]
    assert serve_soak.main([*argv, "--warmup", "0.5", "--bad", "0.3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert summary["no_5xx"] and summary["every_bad_4xx"] and summary["every_good_200"]
    assert summary["bad_requests"] > 0 and report["metrics"]["agree"]
    assert set(summary["latency_by_group"]) == {"known", "later_at", "new_user", "bad"}
    assert out.with_suffix(".png").stat().st_size > 0
