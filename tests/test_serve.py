"""``deepm3 serve`` over real HTTP: a uvicorn server on a free loopback port answers single and
list requests like the library does, batches concurrent clients, keeps per-user state through
``/events``, reports health and Prometheus metrics, and answers every class of bad input with a
4xx and a one-line reason, never a 500, while it keeps serving."""

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from synthetic import small_run

from deepm3.recommend import Recommender
from deepm3.recommend.server import create_app

NOW = 2_000_000_000.0  # the synthetic data lies before this clock


class LiveServer:
    """An app served by uvicorn on 127.0.0.1 in a background thread, until :meth:`stop`."""

    def __init__(self, app) -> None:
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, args=([listening],), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("serve"))


def start(run_dir, **options) -> LiveServer:
    recommender = Recommender.from_run(run_dir, clock=lambda: NOW, **options)
    # a wide batching window, so that concurrent test clients surely share batches
    return LiveServer(create_app(recommender, max_wait_ms=30.0, max_list=20))


@pytest.fixture(scope="module")
def server(run_dir):
    live = start(run_dir)
    yield live
    live.stop()


def metric_samples(client: httpx.Client) -> dict[tuple, float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_a_request_is_answered_with_top_k(server):
    answer = server.client.post("/recommend", json={"user": "u1", "k": 3, "id": "a"})
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["items"]) == 3 == len(body["scores"])
    assert body["scores"] == sorted(body["scores"], reverse=True)
    assert body["user"] == "u1" and body["id"] == "a" and body["solver"] in ("euler", "rk4")


def test_a_list_is_answered_in_order_with_per_item_errors(server):
    requests = [
        {"user": "u2", "k": 2, "id": 1},
        {"user": "nobody", "id": 2},
        {"user": "u3", "k": 4, "solver": "rk4", "id": 3},
        {"user": "u3", "colour": "red", "id": 4},
    ]
    answer = server.client.post("/recommend", json=requests)
    assert answer.status_code == 200
    first, unknown, third, bad_key = answer.json()
    assert first["id"] == 1 and len(first["items"]) == 2
    assert unknown == {"error": unknown["error"], "status": 422, "id": 2}
    assert "unknown user" in unknown["error"]
    assert third["id"] == 3 and third["solver"] == "rk4" and len(third["items"]) == 4
    assert bad_key["status"] == 422 and "unknown request key" in bad_key["error"]
    single = server.client.post("/recommend", json={"user": "u2", "k": 2}).json()
    assert single["items"] == first["items"]  # a batch answers like a lone request


def test_answers_are_the_librarys(server, run_dir):
    """Items and their scores over HTTP, single and in a list, equal what
    :meth:`Recommender.recommend` answers for the same request (a library instance of its
    own), for known users, raw events, a later query time, a named solver and a cached state."""
    library = Recommender.from_run(run_dir, clock=lambda: NOW)
    events = [["i5", 1_000_000_000], ["i6", 1_000_003_600], ["i7", 1_000_090_000]]
    for user in ("library-twin", None):
        if user is not None:  # the same events added on both sides: a cached state each
            assert server.client.post("/events", json={"user": user, "events": events}).is_success
            library.add_events(user, events)
    requests = [
        {"user": "u1", "k": 5},
        {"user": "u7", "k": 8, "at": 1_100_000_000, "solver": "rk4"},
        {"user": "u2", "k": 4, "include_history": True, "solver": "euler"},
        {"events": events, "k": 6, "at": 1_000_500_000},
        {"user": "library-twin", "k": 7, "at": 1_000_900_000},
    ]
    listed = server.client.post("/recommend", json=requests).json()
    for request, in_list in zip(requests, listed, strict=True):
        single = server.client.post("/recommend", json=request).json()
        expected = library.recommend(**request)
        assert expected.items and len(set(expected.scores)) > 1
        for body in (single, in_list):  # batches of other sizes may differ in the last bit
            assert body["items"] == expected.items
            assert np.allclose(body["scores"], expected.scores, rtol=0, atol=2e-6)


def test_a_full_queue_is_answered_503(run_dir):
    """While the model is busy and ``max_queue`` requests wait, one more is answered 503 (busy,
    try again), not 500; the waiting ones are answered once the model is free."""
    recommender = Recommender.from_run(run_dir, clock=lambda: NOW)
    real, busy, free = recommender.recommend_many, threading.Event(), threading.Event()

    def slow(requests):
        busy.set()
        assert free.wait(10)
        return real(requests)

    recommender.recommend_many = slow
    app = create_app(recommender, max_wait_ms=0.0, max_queue=1)
    live = LiveServer(app)
    url = f"{live.url}/recommend"
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, url, json={"user": "u1"}, timeout=10)
            assert busy.wait(10)  # the first request is in a batch; the model is busy
            second = pool.submit(httpx.post, url, json={"user": "u2"}, timeout=10)
            deadline = time.monotonic() + 10
            while app.state.batcher.waiting < 1:  # the second waits in the queue
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.01)
            full = live.client.post("/recommend", json={"user": "u3"})
            free.set()
            assert full.status_code == 503, full.text
            assert "server busy" in full.json()["error"]
            assert first.result().status_code == 200 and second.result().status_code == 200
    finally:
        free.set()
        live.stop()


def test_concurrent_clients_share_batches(server):
    async def fire(count: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            requests = [{"user": f"u{1 + n % 40}", "k": 5, "id": n} for n in range(count)]
            return await asyncio.gather(*(client.post("/recommend", json=r) for r in requests))

    before = metric_samples(server.client)
    answers = asyncio.run(fire(32))
    assert [a.status_code for a in answers] == [200] * 32
    assert [a.json()["id"] for a in answers] == list(range(32))
    after = metric_samples(server.client)
    batches = after[("deepm3_batch_size_count", ())] - before[("deepm3_batch_size_count", ())]
    singles = (
        after[("deepm3_batch_size_bucket", (("le", "1.0"),))]
        - before[("deepm3_batch_size_bucket", (("le", "1.0"),))]
    )
    assert batches < 32 and singles < batches, "no batch of more than one request happened"


def test_events_then_recommend_uses_the_cached_state(server):
    answer = server.client.post(
        "/events",
        json={"user": "newcomer", "events": [["i1", 1_000_000_000], ["i2", 1_000_000_060]]},
    )
    assert answer.status_code == 200 and answer.json()["events"] == 2
    more = server.client.post(
        "/events", json={"user": "newcomer", "events": [["i3", 1_000_003_600]]}
    )
    assert more.status_code == 200 and more.json()["events"] == 3
    body = server.client.post("/recommend", json={"user": "newcomer", "at": 1_000_090_000}).json()
    assert len(body["items"]) == 10 and not {"i1", "i2", "i3"} & set(body["items"])
    health = server.client.get("/health").json()
    assert health["cache"]["users"] >= 1 and health["cache"]["bytes"] > 0


def test_health_and_metrics(server):
    health = server.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["model"] == "deepm3" and body["max_len"] == 10
    assert set(body["solvers"]) == {"euler", "rk4"} and body["uptime_s"] > 0
    assert body["cache"]["capacity"] == 100_000
    samples = metric_samples(server.client)
    assert (
        samples[("deepm3_http_requests_total", (("endpoint", "/health"), ("status", "200")))] >= 1
    )
    latency = [key for key in samples if key[0] == "deepm3_recommend_latency_seconds_count"]
    assert latency, "no latency observed"


def chunks(size: int):
    """A body of ``size`` bytes sent without a Content-Length (chunked encoding)."""
    for _ in range(size // 65536 + 1):
        yield b" " * 65536


BAD = [
    ("malformed JSON", b'{"user": "u1",', 400, "malformed JSON"),
    ("empty body", b"", 400, "empty body"),
    ("NaN", b'{"user": "u1", "at": NaN}', 400, "NaN"),
    ("deep nesting", b"[" * 100_000, 400, "malformed JSON"),
    ("not an object", json.dumps("u1").encode(), 422, "JSON object"),
    ("wrong type", json.dumps({"user": "u1", "k": "ten"}).encode(), 422, "k must be"),
    ("unknown key", json.dumps({"user": "u1", "colour": 1}).encode(), 422, "unknown request key"),
    ("bad event", json.dumps({"events": [["i1"]]}).encode(), 422, "pair"),
    ("huge body", b"[" + b" " * 2_000_000 + b"]", 413, "limit"),
    ("chunked huge body", None, 413, "limit"),  # None: chunks(2_000_000)
    ("empty list", b"[]", 422, "a list holds"),
    ("long list", json.dumps([{"user": "u1"}] * 21).encode(), 413, "a list holds"),
    (
        "unsorted times",
        json.dumps({"events": [["i1", 1_000_000_100], ["i2", 1_000_000_000]]}).encode(),
        422,
        "time order",
    ),
    ("future time", json.dumps({"events": [["i1", 2_100_000_000]]}).encode(), 422, "future"),
    ("no history", json.dumps({"events": []}).encode(), 422, "a request needs"),
    (
        "only unknown items",
        json.dumps({"events": [["zz", 1_000_000_000]]}).encode(),
        422,
        "no known item",
    ),
    ("unknown user", json.dumps({"user": "nobody"}).encode(), 422, "unknown user"),
    ("at before events", json.dumps({"user": "u1", "at": 5}).encode(), 422, "earlier"),
]


@pytest.mark.parametrize(("label", "body", "status", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_recommend_requests_get_a_4xx_and_one_line(server, label, body, status, phrase):
    content = chunks(2_000_000) if body is None else body
    answer = server.client.post("/recommend", content=content)
    assert answer.status_code == status, answer.text
    reason = answer.json()["error"]
    assert phrase in reason and "\n" not in reason and "Traceback" not in reason
    assert server.client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ([["i1", 1]], "send"),
        ({"events": [["i1", 1_000_000_000]]}, "send"),
        ({"user": "x", "events": [5]}, "pair"),
        ({"user": "x", "events": "i1"}, "events must be"),
        ({"user": "x", "events": [], "more": 1}, "unknown key"),
        ({"user": "never-seen"}, "unknown user"),
        ({"user": True, "events": [["i1", 1_000_000_000]]}, "user must be"),
    ],
)
def test_bad_events_get_a_4xx_and_one_line(server, body, phrase):
    answer = server.client.post("/events", json=body)
    assert answer.status_code == 422, answer.text
    assert phrase in answer.json()["error"] and "\n" not in answer.json()["error"]


def test_other_paths_and_methods_answer_one_line(server):
    cases = (("GET", "/nowhere", 404), ("GET", "/a%0Ab", 404), ("GET", "/recommend", 405))
    for method, path, status in cases:
        answer = server.client.request(method, path)
        assert answer.status_code == status and "\n" not in answer.json()["error"]


def test_notes_report_ignored_items_and_truncation(server):
    events = [[f"i{1 + n % 40}", 1_000_000_000 + 60 * n] for n in range(14)] + [
        ["zz", 1_000_001_000]
    ]
    body = server.client.post("/recommend", json={"events": events}).json()
    notes = " ".join(body["notes"])
    assert "unknown item" in notes and "truncated to the last 10" in notes


def test_no_bad_input_ever_gave_a_500(server):
    for _, body, _, _ in BAD:
        server.client.post("/recommend", content=chunks(2_000_000) if body is None else body)
    samples = metric_samples(server.client)
    statuses = {dict(labels).get("status") for name, labels in samples if name.endswith("_total")}
    assert "500" not in statuses and {"400", "413", "422"} <= statuses
    assert server.client.get("/health").status_code == 200


def test_unknown_items_can_be_rejected(run_dir):
    live = start(run_dir, unknown_items="reject")
    try:
        events = [["i1", 1_000_000_000], ["zz-unknown", 1_000_000_100]]
        answer = live.client.post("/recommend", json={"events": events})
        assert answer.status_code == 422 and "unknown item" in answer.json()["error"]
        assert live.client.get("/health").status_code == 200
    finally:
        live.stop()


def test_an_unexpected_failure_costs_only_its_own_request(run_dir):
    recommender = Recommender.from_run(run_dir, clock=lambda: NOW)
    real = recommender.recommend_many

    def faulty(requests):  # a bug that only requests with k=999 hit
        if any(request.k == 999 for request in requests):
            raise RuntimeError("boom\nwith a second line")
        return real(requests)

    recommender.recommend_many = faulty
    live = LiveServer(create_app(recommender, max_wait_ms=30.0))
    try:
        single = live.client.post("/recommend", json={"user": "u1", "k": 999})
        assert single.status_code == 500 and "\n" not in single.json()["error"]
        both = live.client.post(
            "/recommend", json=[{"user": "u1", "k": 2}, {"user": "u1", "k": 999}]
        )
        assert both.status_code == 200
        fine, failed = both.json()
        assert len(fine["items"]) == 2 and failed["status"] == 500
        assert live.client.post("/recommend", json={"user": "u1"}).status_code == 200
    finally:
        live.stop()


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"max_wait_ms": float("nan")}, "max_wait_ms"),
        ({"max_wait_ms": float("inf")}, "max_wait_ms"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_list": 0}, "max_list"),
        ({"max_body_bytes": -1}, "max_body_bytes"),
    ],
)
def test_bad_server_options_are_refused_before_serving(run_dir, options, phrase):
    from deepm3.errors import ConfigError

    with pytest.raises(ConfigError, match=phrase):
        create_app(Recommender.from_run(run_dir), **options)
