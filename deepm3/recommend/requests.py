"""Recommendation requests and answers: the one schema of ``deepm3 recommend``, the Python API
and ``deepm3 serve``.

A request is a JSON object::

    {"user": "42",                      # optional: a user of the run's data (history used)
     "events": [["1193", 978300760], ...],  # optional: (raw item id, unix seconds) pairs
     "at": 978400000,                   # optional: the query time (DeepM3 evolves to it)
     "k": 10,                           # optional, default 10
     "solver": "euler",                 # optional: euler | rk4 (fixed-step) | auto; DeepM3 only
     "include_history": false}          # optional: may already-seen items be recommended?

:func:`parse_request` checks its shape and types only; what needs the run (known items, users,
time order) is checked by the recommender. Every problem raises :class:`RequestError` with a
one-line reason and an HTTP status (422 for a well-formed request the model cannot answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from deepm3.errors import DeepM3Error
from deepm3.ode.solvers import fixed_step_methods
from deepm3.recommend.auto import AUTO

SOLVERS = (*fixed_step_methods(), AUTO)  # the fixed-step ODE methods, and the auto policy
KEYS = ("user", "events", "at", "k", "solver", "include_history", "id")
MAX_K = 1000
# Unix seconds up to the year 2500 (int64 stays exact; a larger value is a unit mistake).
MAX_TIME = 16_725_225_600


class RequestError(DeepM3Error):
    """A request that cannot be answered; ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 422) -> None:
        # one line, whatever a request echoed into it (ids and keys may hold newlines)
        super().__init__(" ".join(reason.split())[:300])
        self.status = status


@dataclass(frozen=True)
class Request:
    """One parsed request: raw ids as strings, times as int seconds."""

    user: str | None = None
    events: tuple[tuple[str, int], ...] = ()
    at: int | None = None
    k: int = 10
    solver: str | None = None  # None: the run's own solver
    include_history: bool = False
    id: Any = None  # echoed back, for clients that match answers to requests


@dataclass
class Recommendation:
    """The answer: top-k raw item ids and their scores, best first, and what was changed."""

    items: list[str]
    scores: list[float]
    user: str | None = None
    solver: str | None = None  # the solver that produced the scores (DeepM3 only)
    notes: list[str] = field(default_factory=list)  # unknown items dropped, truncation, ...
    id: Any = None

    def to_dict(self) -> dict[str, Any]:
        out = {"items": self.items, "scores": self.scores}
        for key in ("user", "solver", "id"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.notes:
            out["notes"] = self.notes
        return out


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def decode_json(text: str | bytes) -> Any:
    """Strict JSON (no NaN or Infinity, numbers in range) -> a Python value, or RequestError
    (400) with one line for anything else: malformed text, absurd nesting, a 5,000-digit
    integer."""
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        raise RequestError(f"malformed JSON: {type(error).__name__}: {reason}", 400) from None


def _time(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{where} must be unix seconds (a number), got {value!r:.40}")
    if value != value or not 0 <= value <= MAX_TIME:  # NaN, negative, or far beyond 2500
        raise RequestError(f"{where} must be unix seconds between 0 and {MAX_TIME}, got {value}")
    return int(value)


def _item(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RequestError(f"{where} must be an item id (string or integer), got {value!r:.40}")
    text = str(value)
    if not text or len(text) > 200:
        raise RequestError(f"{where} must be an item id of 1 to 200 characters")
    return text


def _events(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list):
        raise RequestError("events must be a list of [item, unix_time] pairs")
    events = []
    for number, event in enumerate(value):
        where = f"events[{number}]"
        if not isinstance(event, (list, tuple)) or len(event) != 2:
            raise RequestError(f"{where} must be an [item, unix_time] pair, got {event!r:.60}")
        events.append((_item(event[0], f"{where} item"), _time(event[1], f"{where} time")))
    return tuple(events)


def parse_request(payload: Any) -> Request:
    """A :class:`Request` from a decoded JSON object, or :class:`RequestError`."""
    if not isinstance(payload, dict):
        raise RequestError(f"a request must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(KEYS))
    if unknown:
        named = ", ".join(f"{key!r:.40}" for key in unknown[:5])
        raise RequestError(f"unknown request key(s) {named}; valid: {', '.join(KEYS)}")
    user = payload.get("user")
    if user is not None:
        user = _item(user, "user")
    events = _events(payload.get("events", []))
    if user is None and not events:
        raise RequestError("a request needs a known user id or at least one event")
    at = payload.get("at")
    at = None if at is None else _time(at, "at")
    k = payload.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RequestError(f"k must be an integer from 1 to {MAX_K}, got {k!r:.40}")
    solver = payload.get("solver")
    if solver is not None and solver not in SOLVERS:
        raise RequestError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r:.40}")
    include = payload.get("include_history", False)
    if not isinstance(include, bool):
        raise RequestError(f"include_history must be true or false, got {include!r:.40}")
    return Request(user, events, at, k, solver, include, payload.get("id"))
