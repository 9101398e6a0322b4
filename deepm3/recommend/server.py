"""``deepm3 serve``: a trained run behind HTTP (FastAPI on uvicorn).

Endpoints (request and answer schema: :mod:`deepm3.recommend.requests`):

* ``POST /recommend``: one request object, answered by one object; or a list of them, answered
  by a list in the same order. Requests from concurrent clients are micro-batched
  (:mod:`deepm3.recommend.batching`): one ``recommend_many`` call per batch, on one worker thread.
* ``POST /events``: ``{"user": id, "events": [[item, unix_time], ...]}`` appends events to a user
  and updates their cached state (on the same worker thread, never during a batch).
* ``GET /health``: model, ``max_len``, solvers, state cache, uptime, requests waiting.
* ``GET /metrics``: Prometheus text from this app's own registry.

Errors are ``{"error": "one-line reason"}``, never a traceback, with a 4xx status for bad input:
400 for an empty body or malformed JSON (NaN and Infinity included), 413 for a body over
``max_body_bytes`` or a list over ``max_list`` requests, 422 for an empty list or a request the
model cannot answer (wrong types, unknown keys, unsorted or future times, no known item, unknown
user, a user id when the run's data is not on the machine, unknown items when the recommender
rejects them), 404 and 405 for other paths and methods;
503 when ``max_queue`` requests are already waiting, 500 only for a bug. What is only adjusted
(unknown items ignored, a history truncated to ``max_len``, ``at`` ignored by a model without a
flow) is answered with 200 and reported in the answer's ``notes``.

A list body is answered 200 whenever the list itself is valid: each item is its answer, or
``{"error": reason, "status": code}`` (plus the item's ``id`` when it has one) for an item that
failed, so one bad item never costs the others their answers. An unexpected exception fails only
its own request (500, logged with its traceback); the server keeps serving.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest

from deepm3.errors import ConfigError
from deepm3.recommend.batching import InternalError, MicroBatcher, QueueFullError, one_line
from deepm3.recommend.monitoring import CountResponses, Metrics
from deepm3.recommend.recommender import Recommender
from deepm3.recommend.requests import Request, RequestError, decode_json, parse_request

MAX_BODY_BYTES = 1_000_000
MAX_LIST = 1_000
PATHS = ("/recommend", "/events", "/health", "/metrics")
APP_OPTIONS = ("max_batch", "max_wait_ms", "max_body_bytes", "max_list", "max_queue")


async def read_json(request: HTTPRequest, limit: int) -> Any:
    """The decoded JSON body, at most ``limit`` bytes; RequestError (400, 413) otherwise."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(f"body of {declared} bytes is over the limit of {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"body is over the limit of {limit} bytes", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise RequestError("empty body: send a JSON object (or, for /recommend, a list)", 400)
    return decode_json(body)


def _item_error(error: RequestError | InternalError, payload: Any) -> dict[str, Any]:
    """A failed item of a list body."""
    status = error.status if isinstance(error, RequestError) else 500
    entry = {"error": str(error), "status": status}
    if isinstance(payload, dict) and payload.get("id") is not None:
        entry["id"] = payload["id"]
    return entry


def _error_response(reason: str, status: int) -> JSONResponse:
    """``{"error": reason}`` on one line (a decoded path may hold a newline), at most 300
    characters."""
    return JSONResponse({"error": " ".join(reason.split())[:300]}, status_code=status)


def create_app(
    recommender: Recommender,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_list: int = MAX_LIST,
    max_queue: int = 10_000,
) -> FastAPI:
    """An app serving ``recommender`` (which only its one worker thread may call from now on)."""
    if not (1 <= max_body_bytes <= 1 << 30 and 1 <= max_list <= 1_000_000):
        raise ConfigError(
            f"max_body_bytes from 1 to 2**30 (got {max_body_bytes}) and max_list from 1 to "
            f"1000000 (got {max_list})"
        )
    metrics = Metrics()
    try:
        batcher = MicroBatcher(
            recommender.recommend_many, max_batch=max_batch, max_wait_ms=max_wait_ms,
            max_queue=max_queue, on_batch=metrics.observe_batch,
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(str(error)) from None
    own_solver = recommender.own_solver or "none"
    started = time.monotonic()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"deepm3 serve: {recommender.name}", lifespan=lifespan)
    app.state.metrics, app.state.batcher = metrics, batcher
    app.add_middleware(CountResponses, metrics=metrics, paths=PATHS)

    @app.exception_handler(RequestError)
    async def request_error(_: HTTPRequest, error: RequestError) -> JSONResponse:
        return _error_response(str(error), error.status)

    @app.exception_handler(QueueFullError)
    async def queue_full(_: HTTPRequest, error: QueueFullError) -> JSONResponse:
        return _error_response(f"server busy: {error}", 503)

    @app.exception_handler(HTTPException)
    async def http_error(request: HTTPRequest, error: HTTPException) -> JSONResponse:
        reason = f"{str(error.detail).lower()}: {request.method} {request.url.path[:100]}"
        return _error_response(reason, error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: HTTPRequest, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error_response(f"{where}: {first.get('msg', 'invalid')}", 422)

    @app.exception_handler(Exception)  # Starlette re-raises it after this answer: uvicorn logs it
    async def unexpected(_: HTTPRequest, error: Exception) -> JSONResponse:
        return _error_response(f"internal error: {one_line(error)}", 500)

    def solver_of(requests: list[Request]) -> str:
        """The latency label: the requested solver (the run's own when none is named)."""
        if recommender.own_solver is None:
            return "none"
        solvers = {request.solver or own_solver for request in requests}
        return solvers.pop() if len(solvers) == 1 else "mixed"

    async def answer_list(payload: list) -> tuple[list[dict[str, Any]], list[Request]]:
        """Each item's answer or error, and the valid requests."""
        if not 1 <= len(payload) <= max_list:
            status = 413 if payload else 422
            raise RequestError(f"a list holds 1 to {max_list} requests, not {len(payload)}", status)
        parsed: list[Request | RequestError] = []
        for item in payload:
            try:
                parsed.append(parse_request(item))
            except RequestError as error:
                parsed.append(error)
        valid = [request for request in parsed if isinstance(request, Request)]
        answers = iter(await batcher.submit(valid))
        out = []
        for item, request in zip(payload, parsed, strict=True):
            answer = next(answers) if isinstance(request, Request) else request
            if isinstance(answer, (RequestError, InternalError)):
                out.append(_item_error(answer, item))
                metrics.errors.labels("/recommend", str(out[-1]["status"])).inc()
            else:
                out.append(answer.to_dict())
        return out, valid

    @app.post("/recommend")
    async def recommend(http: HTTPRequest) -> JSONResponse:
        clock = time.perf_counter()
        payload = await read_json(http, max_body_bytes)
        if isinstance(payload, list):
            out, requests = await answer_list(payload)
        else:
            requests = [parse_request(payload)]
            answer = (await batcher.submit(requests))[0]
            if isinstance(answer, InternalError):
                return _error_response(str(answer), 500)
            if isinstance(answer, RequestError):
                raise answer
            out = answer.to_dict()
        metrics.latency.labels(solver_of(requests)).observe(time.perf_counter() - clock)
        return JSONResponse(out)

    @app.post("/events")
    async def events(http: HTTPRequest) -> JSONResponse:
        payload = await read_json(http, max_body_bytes)
        if not isinstance(payload, dict) or "user" not in payload:
            raise RequestError('send {"user": id, "events": [[item, unix_time], ...]}')
        unknown = sorted(set(payload) - {"user", "events"})
        if unknown:
            raise RequestError(f"unknown key(s) {', '.join(unknown)}; valid: user, events")
        request = parse_request({"user": payload["user"], "events": payload.get("events", [])})
        events = [list(event) for event in request.events]
        return JSONResponse(await batcher.call(recommender.add_events, request.user, events))

    def snapshot() -> dict[str, Any]:  # on the worker thread: the cache is not shared
        cache = recommender.cache
        return {
            "users": len(cache), "capacity": cache.capacity, "bytes": cache.nbytes(),
            "evictions": cache.evictions,
        }  # fmt: skip

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({
            "status": "ok", "model": recommender.name, "max_len": recommender.max_len,
            "known_users": len(recommender.histories.user_index),  # 0 without the run's data
            "max_replay": recommender.max_replay,
            "solvers": sorted(recommender.solvers), "cache": await batcher.call(snapshot),
            "uptime_s": round(time.monotonic() - started, 3), "waiting": batcher.waiting,
            "max_batch": max_batch, "max_wait_ms": max_wait_ms,
        })  # fmt: skip

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def warm_line(recommender: Recommender, warmed: dict) -> str:
    """What ``--warm`` did, on one line."""
    if not recommender.scoring.evolves:
        return f"deepm3 serve: --warm: nothing to warm, {recommender.name} keeps no state"
    if recommender.data is None:
        return "deepm3 serve: --warm: no known users without the run's data"
    known = len(recommender.histories.user_index)
    return (
        f"deepm3 serve: warmed {warmed['users']} of {known} known users in "
        f"{warmed['seconds']:.1f} s ({warmed['bytes'] / 1e6:.1f} MB in the state cache)"
    )


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    access_log: bool = True,
    warm: bool = False,
    **options: Any,
) -> None:
    """Load ``run_dir`` and serve it until interrupted; ``warm``: first cache the state of
    every known user (:meth:`Recommender.warm`). ``options`` go to :func:`create_app`
    (``max_batch``, ``max_wait_ms``, ...) or to :meth:`Recommender.from_run` (``data_dir``,
    ``device``, ``unknown_items``, ``cache_size``, ``max_replay``, ...)."""
    app_options = {key: options.pop(key) for key in APP_OPTIONS if key in options}
    recommender = Recommender.from_run(run_dir, **options)
    if recommender.data is None:
        print(
            "deepm3 serve: note: the run's training data is not on this machine (pass "
            "--data-dir or set DEEPM3_DATA_DIR): requests by user id need the user's events",
            file=sys.stderr,
        )
    if warm:
        print(warm_line(recommender, recommender.warm()), file=sys.stderr)
    app = create_app(recommender, **app_options)
    gc.collect()
    gc.freeze()  # the model and the data live as long as the server: keep them out of GC passes
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
