"""Recommend from a trained run: for any user, from their own events, at a query time.

``Recommender.from_run(RUN_DIR)`` rebuilds the run's model with its best weights from the run
directory alone (its ``serving.npz`` holds the item vocabulary: :mod:`~.loading`), and reads the
run's data where it is on the machine, for the histories of known users (its fingerprint must
match the one the run recorded). :meth:`Recommender.recommend_many` answers a list of requests
in batches (one forward per batch, not per request); ``deepm3 recommend`` and ``deepm3 serve``
call it.
It orchestrates the pieces, one module each:

* :mod:`~deepm3.recommend.histories`: a request's history. A known user's history is every
  event of that user in the run's data (training, validation and test: what the data file
  holds), followed by the events the request adds; the model reads the last ``max_len``.
  Without the data, a request by user id is refused (send the user's events) unless the user
  has a cached state.
* :mod:`~deepm3.recommend.scoring`: histories or cached states -> item scores. ``at`` (unix
  seconds) evolves the state of a model with a flow (DeepM3) from the last event to that time,
  exactly what ``predict_at=target_time`` does with the target's time; other models do not
  evolve in time, and their answer says that ``at`` was ignored. ``solver`` (DeepM3 only): a
  fixed-step method (``euler``, ``rk4``) re-solves the same weights with it.
* :mod:`~deepm3.recommend.auto`: ``solver=auto`` answers with Euler, then re-solves with RK4
  the most uncertain requests (normalised entropy above ``auto_threshold``) while the batch's
  latency budget ``auto_budget_ms`` allows.
* :mod:`~deepm3.recommend.state`: users whose events arrive one by one (:meth:`add_events`)
  keep a cached state; DeepM3 absorbs each event in one step and a query evolves the cached
  state instead of replaying the history (a model that ``absorbs_events``; the others, timeattn
  included, keep the window and replay it, then evolve to ``at`` if they have a flow).
  :meth:`warm` computes the states of every known user at once, in batches (``deepm3 serve
  --warm``), so that no known user waits for a replay.
* ``max_replay``: how many of a history's most recent events are replayed through the model
  (at most ``max_len``; None: ``max_len``). The default, :data:`DEFAULT_MAX_REPLAY`, comes from
  ``benchmarks/replay_tradeoff.py``: on ML-1M, replaying the last 25 events changed NDCG@10 by
  +0.8% (95% interval -0.7% to +2.3%) against all 200 of a 200-event model, and by +0.7%
  (-0.6% to +2.0%) against all 50 of the demo's model, in two thirds of the time of 50
  events; under 50 loopback clients it takes the replayed p99 under 50 ms (docs/serving.md).
* :mod:`~deepm3.recommend.ranking`: items the user already had are excluded unless
  ``include_history``; the top k.

Not thread-safe: one caller at a time (the server runs it on one worker thread).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.ode.solvers import fixed_step_methods
from deepm3.recommend import auto
from deepm3.recommend.histories import UNKNOWN_ITEMS, Histories, History
from deepm3.recommend.loading import LoadedRun, load_run
from deepm3.recommend.ranking import candidates, top_many
from deepm3.recommend.requests import Recommendation, Request, RequestError, parse_request
from deepm3.recommend.scoring import Scoring
from deepm3.recommend.state import StateCache, UserState, uses_cached_state

Answer = Recommendation | RequestError
MAX_REPLAY = 1 << 20
DEFAULT_MAX_REPLAY = 25  # benchmarks/results/replay_tradeoff*_cpu.json, docs/serving.md


def cache_entry(history: History, state: torch.Tensor | None) -> UserState:
    """What the cache keeps of a history: the window as its own small arrays (a view would keep
    the whole history it was cut from alive)."""
    return UserState(
        history.seen, history.items.copy(), history.times.copy(), history.time_scale, state
    )


class Recommender:
    """A trained run, ready to answer :class:`~deepm3.recommend.requests.Request` objects."""

    def __init__(
        self,
        run: LoadedRun,
        *,
        unknown_items: str = "ignore",
        batch_size: int = 256,
        cache_size: int = 100_000,
        auto_threshold: float = 0.9,
        auto_budget_ms: float = 20.0,
        max_replay: int | None = DEFAULT_MAX_REPLAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if unknown_items not in UNKNOWN_ITEMS:
            raise ConfigError(f"unknown_items must be one of {', '.join(UNKNOWN_ITEMS)}")
        if max_replay is not None and (
            isinstance(max_replay, bool)
            or not isinstance(max_replay, int)
            or not 1 <= max_replay <= MAX_REPLAY
        ):
            raise ConfigError(
                f"max_replay must be an integer from 1 to {MAX_REPLAY} (events replayed), "
                f"got {max_replay!r:.40}"
            )
        checks = {
            "batch_size": (batch_size, 1 <= batch_size <= 1 << 20, "from 1 to 1048576"),
            "cache_size": (cache_size, 1 <= cache_size <= 1 << 32, "from 1 to 2**32"),
            "auto_threshold": (auto_threshold, 0.0 <= auto_threshold <= 1.0, "in [0, 1]"),
            "auto_budget_ms": (auto_budget_ms, 0.0 <= auto_budget_ms < math.inf, ">= 0, finite"),
        }
        for name, (value, valid, expected) in checks.items():
            if not valid:  # NaN fails every comparison, so it lands here too
                raise ConfigError(f"{name} must be {expected}, got {value!r:.40}")
        self.plan, self.serving, self.data = run.plan, run.serving, run.data
        self.scorer, self.model = run.scorer, run.model
        self.name, self.max_len = run.plan.name, run.serving.max_len
        self.item_ids = run.serving.item_ids  # (N + 1,) raw id of each item index
        self.unknown_items, self.batch_size = unknown_items, batch_size
        self.auto_threshold, self.auto_budget_ms, self.clock = auto_threshold, auto_budget_ms, clock
        self.cache = StateCache(cache_size)
        self.histories = Histories(
            run.serving, run.data, self.cache, unknown_items, clock, max_replay
        )
        self.max_replay = self.histories.window  # the events replayed: <= max_len
        self.scoring = Scoring(run.model, run.scorer, self.max_replay, batch_size)
        self.device = self.scoring.device
        # running means per fixed-step method, for solver=auto
        self.seconds_per_request = dict.fromkeys(fixed_step_methods(), 0.0)

    @classmethod
    def from_run(
        cls, run_dir: str | Path, *, data_dir: str | None = None, device: str | None = None, **kw
    ) -> Recommender:
        """The run's best model, from its directory alone; its data, where available, for
        the histories of known users (``data_dir``: where the raw files are)."""
        return cls(load_run(run_dir, data_dir, device), **kw)

    @property
    def solvers(self) -> dict[str, nn.Module]:
        """ODE method -> the model solved with it (empty for a model without a flow)."""
        return self.scoring.solvers

    @property
    def own_solver(self) -> str | None:
        """The ODE method the run was trained with (None for a model without a flow)."""
        return self.scoring.own_solver

    def _solver_name(self, requested: str | None) -> str | None:
        """The solver that answers a request: None for models without a flow to solve."""
        if not self.scoring.solvers:
            return None
        if requested in (None, auto.AUTO):
            return auto.FIRST if requested == auto.AUTO else self.own_solver
        return requested

    def _notes_for(self, request: Request) -> list[str]:
        notes = []
        if request.at is not None and not self.scoring.evolves:
            notes.append(f"at ignored: {self.name} does not evolve in time (it has no flow)")
        if request.solver is not None and not self.scoring.evolves:
            notes.append(f"solver ignored: {self.name} has no ODE")
        elif request.solver is not None and not self.scoring.solvers:
            notes.append(f"solver ignored: {self.name}'s flow is exact (a closed form)")
        return notes

    def _solve(self, histories: list[History], solver: str | None) -> list[torch.Tensor]:
        """Scores (N + 1,) per history; times the batches of fixed-step methods (for auto)."""
        scores, timings = self.scoring.many_histories(histories, solver)
        if solver in self.seconds_per_request:
            for seconds in timings:
                mean = self.seconds_per_request[solver]
                self.seconds_per_request[solver] = auto.running_mean(mean, seconds)
        return scores

    def recommend(
        self,
        events: Sequence[tuple[str | int, int]] = (),
        *,
        user: str | None = None,
        at: int | None = None,
        k: int = 10,
        solver: str | None = None,
        include_history: bool = False,
    ) -> Recommendation:
        """Top-k for one user; raises :class:`RequestError` for a request it cannot answer."""
        payload = {"events": list(events), "k": k, "include_history": include_history}
        payload.update({key: v for key, v in (("user", user), ("at", at), ("solver", solver)) if v})
        answer = self.recommend_many([parse_request(payload)])[0]
        if isinstance(answer, RequestError):
            raise answer
        return answer

    def recommend_many(self, requests: Sequence[Request]) -> list[Answer]:
        """Answers in request order; a request that cannot be answered gets its RequestError."""
        answers: list[Answer | None] = [None] * len(requests)
        histories: dict[int, tuple[History, list[str]]] = {}
        groups: dict[str | None, list[int]] = {}  # requested solver -> request numbers
        cached: dict[str | None, list[tuple[int, UserState]]] = {}  # solver -> (number, entry)
        for number, request in enumerate(requests):
            try:
                entry = self.cache.get(request.user) if request.user is not None else None
                if uses_cached_state(entry, request):
                    if request.at is not None and request.at < entry.last_time:
                        raise RequestError(
                            f"at ({request.at}) is earlier than the last event ({entry.last_time})"
                        )
                    cached.setdefault(self._solver_name(request.solver), []).append((number, entry))
                    continue
                notes = self._notes_for(request)
                histories[number] = (self.histories.history(request, notes), notes)
            except RequestError as error:
                answers[number] = error
                continue
            groups.setdefault(request.solver if self.scoring.solvers else None, []).append(number)
        ids = self.item_ids
        for solver, pairs in cached.items():
            at = [requests[number].at or 0 for number, _ in pairs]
            scores = self.scoring.many_states([entry for _, entry in pairs], at, solver)
            numbers = [number for number, _ in pairs]
            ranked = top_many(
                [requests[n] for n in numbers], scores, [entry.seen for _, entry in pairs], ids,
                [self._notes_for(requests[n]) for n in numbers], [solver] * len(numbers),
            )  # fmt: skip
            for number, answer in zip(numbers, ranked, strict=True):
                answers[number] = answer
        for solver, numbers in groups.items():
            first = auto.FIRST if solver == auto.AUTO else solver
            results = dict(
                zip(numbers, self._solve([histories[n][0] for n in numbers], first), strict=True)
            )
            used = dict.fromkeys(numbers, self._solver_name(first))
            if solver == auto.AUTO:
                self._refine(numbers, requests, histories, results, used)
            ranked = top_many(
                [requests[n] for n in numbers], [results[n] for n in numbers],
                [histories[n][0].seen for n in numbers], ids,
                [histories[n][1] for n in numbers], [used[n] for n in numbers],
            )  # fmt: skip
            for number, answer in zip(numbers, ranked, strict=True):
                answers[number] = answer
        return answers

    def uncertainty(self, requests: Sequence[Request]) -> np.ndarray:
        """(R,) normalised entropy of each request's Euler scores over the items it may be
        recommended (what ``solver=auto`` compares with ``auto_threshold``)."""
        histories = [self.histories.history(request, []) for request in requests]
        scores = self._solve(histories, auto.FIRST if self.scoring.solvers else None)
        seen = [history.seen for history in histories]
        return auto.normalised_entropy(candidates(scores, requests, seen)).cpu().numpy()

    def _refine(self, numbers: list[int], requests, histories: dict, results: dict, used: dict):
        """solver=auto: re-solve with RK4 the most uncertain answers the latency budget allows
        (:func:`deepm3.recommend.auto.to_refine` chooses them)."""
        scores = candidates(
            [results[n] for n in numbers],
            [requests[n] for n in numbers],
            [histories[n][0].seen for n in numbers],
        )
        rows = auto.to_refine(
            auto.normalised_entropy(scores),
            self.auto_threshold,
            self.auto_budget_ms,
            self.seconds_per_request,
        )
        chosen = [numbers[row] for row in rows]
        if chosen:
            rescored = self._solve([histories[n][0] for n in chosen], auto.REFINED)
            for number, scores in zip(chosen, rescored, strict=True):
                results[number], used[number] = scores, auto.REFINED

    def add_events(self, user: str, events: Sequence[tuple[str | int, int]]) -> dict:
        """Append (item, unix time) events to a user, known or new, and update the cached
        state: DeepM3 absorbs each event in one step; the first call replays the known history
        once. Returns the user, their number of events and notes (unknown items ignored)."""
        notes: list[str] = []
        if user is None:
            raise RequestError("add_events needs a user id")
        request = parse_request({"user": user, "events": list(events)})
        entry = self.cache.get(request.user)
        known = entry is not None or request.user in self.histories.user_index
        if not known and not request.events:
            raise RequestError(f"unknown user {user!r:.60} and no events")
        history = self.histories.history(
            Request(request.user if known else None, request.events), notes
        )
        state = None
        if self.scoring.absorbs and entry is None:
            state = self.scoring.replayed_states([history])[0]
        elif self.scoring.absorbs:
            items, times = self.histories.items(request.events, [])
            state = self.scoring.absorbed_state(entry.state, entry.last_time, items, times)
        entry = cache_entry(history, state)
        self.cache.put(request.user, entry)
        return {"user": request.user, "events": int(len(entry.seen)), "notes": notes}

    def warm(self) -> dict:
        """Cache the state of every known user (a model with a flow and the run's data on this
        machine), replayed ``batch_size`` users per forward, so that their requests evolve a
        cached state instead of replaying. With more known users than the cache holds, the
        ones whose last event is latest. Returns users cached, seconds taken, cache bytes."""
        started = time.perf_counter()
        users = list(self.histories.user_index)
        if not self.scoring.absorbs or not users:
            return {"users": 0, "seconds": 0.0, "bytes": self.cache.nbytes()}
        if len(users) > self.cache.capacity:
            events = self.data.events
            last = events.timestamps[np.asarray(events.offsets[2:]) - 1]  # (U,) users 1..U
            latest = np.argsort(last, kind="stable")[-self.cache.capacity :]
            users = [users[index] for index in latest]  # least recent first: evicted first
        for start in range(0, len(users), self.batch_size):
            chunk = users[start : start + self.batch_size]
            histories = [self.histories.history(Request(user), []) for user in chunk]
            states = self.scoring.replayed_states(histories)
            for user, history, state in zip(chunk, histories, states, strict=True):
                self.cache.put(user, cache_entry(history, state))
        seconds = time.perf_counter() - started
        return {"users": len(users), "seconds": seconds, "bytes": self.cache.nbytes()}
