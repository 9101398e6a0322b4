"""Recommend from a trained run: for any user, from their own events, at a query time.

``Recommender.from_run(RUN_DIR)`` rebuilds the run's model with its best weights and the run's
data (for the item vocabulary and the histories of known users; its fingerprint must match the
one the run recorded). :meth:`Recommender.recommend_many` answers a list of requests in batches
(one forward per batch, not per request); ``deepm3 recommend`` and ``deepm3 serve`` call it.

* A known user's history is every event of that user in the run's data (training, validation
  and test: what the data file holds), followed by the events the request adds.
* ``at`` (unix seconds) evolves DeepM3's state from the last event to that time with the
  learned flow (:meth:`~deepm3.models.deepm3.DeepM3.advance`), exactly what
  ``predict_at=target_time`` does with the target's time. Other models do not evolve in time:
  their answer says that ``at`` was ignored.
* Items the user already had are excluded unless ``include_history``; the history read by the
  model is the last ``max_len`` events (longer ones are truncated, and the answer says so).
* ``solver`` (DeepM3 only): ``euler`` or ``rk4`` re-solve the same weights with that method;
  ``auto`` answers with Euler, then re-solves with RK4 the requests whose score distribution is
  most uncertain (normalised entropy above ``auto_threshold``) while the batch's latency budget
  ``auto_budget_ms`` allows.
* Users whose events arrive one by one (:meth:`add_events`) keep a cached state
  (:mod:`deepm3.recommend.state`): DeepM3 absorbs each event in one step and a query evolves the
  cached state instead of replaying the history.

Not thread-safe: one caller at a time (the server runs it on one worker thread).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepm3.data.prepare import Prepared, prepare
from deepm3.data.sequences import Batch, gap_features, history_table
from deepm3.errors import ConfigError
from deepm3.models.contract import item_scores
from deepm3.recommend.histories import UNKNOWN_ITEMS, Histories, History
from deepm3.recommend.requests import Recommendation, Request, RequestError, parse_request
from deepm3.recommend.state import StateCache, UserState
from deepm3.train.device import select_device
from deepm3.train.run import RunPlan, load_plan, load_trained
from deepm3.train.rundir import read_record


def normalised_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(scores) (B, N) over the finite entries, divided by log(count): (B,)
    in [0, 1]; 1 is a uniform distribution (the model cannot tell the candidates apart)."""
    finite = torch.isfinite(scores)
    log_p = torch.log_softmax(scores.masked_fill(~finite, float("-inf")), dim=-1)
    entropy = -(log_p.exp() * log_p.masked_fill(~finite, 0.0)).sum(-1)
    count = finite.sum(-1).clamp(min=2).to(scores.dtype)
    return entropy / count.log()


def _candidates(
    scores: list[torch.Tensor], requests: Sequence[Request], seen: Sequence[np.ndarray]
) -> torch.Tensor:
    """(R, N + 1) scores with what may not be recommended at -inf: padding, and each row's
    seen items (n_i,) unless its request includes the history."""
    stacked = torch.stack(scores)
    stacked[:, 0] = float("-inf")
    for row, (request, items) in enumerate(zip(requests, seen, strict=True)):
        if not request.include_history:
            stacked[row, torch.as_tensor(items, device=stacked.device)] = float("-inf")
    return stacked


class Recommender:
    """A trained run, ready to answer :class:`~deepm3.recommend.requests.Request` objects."""

    def __init__(
        self,
        plan: RunPlan,
        data: Prepared,
        scorer: Callable[[Batch], torch.Tensor],
        model: nn.Module | None,
        *,
        unknown_items: str = "ignore",
        batch_size: int = 256,
        cache_size: int = 100_000,
        auto_threshold: float = 0.9,
        auto_budget_ms: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if unknown_items not in UNKNOWN_ITEMS:
            raise ConfigError(f"unknown_items must be one of {', '.join(UNKNOWN_ITEMS)}")
        checks = {
            "batch_size": (batch_size, 1 <= batch_size <= 1 << 20, "from 1 to 1048576"),
            "cache_size": (cache_size, 1 <= cache_size <= 1 << 32, "from 1 to 2**32"),
            "auto_threshold": (auto_threshold, 0.0 <= auto_threshold <= 1.0, "in [0, 1]"),
            "auto_budget_ms": (auto_budget_ms, 0.0 <= auto_budget_ms < math.inf, ">= 0, finite"),
        }
        for name, (value, valid, expected) in checks.items():
            if not valid:  # NaN fails every comparison, so it lands here too
                raise ConfigError(f"{name} must be {expected}, got {value!r:.40}")
        self.plan, self.data, self.scorer, self.model = plan, data, scorer, model
        self.name, self.max_len = plan.name, data.max_len
        self.unknown_items, self.batch_size = unknown_items, batch_size
        self.auto_threshold, self.auto_budget_ms, self.clock = auto_threshold, auto_budget_ms, clock
        self.cache = StateCache(cache_size)
        self.device = next(model.parameters()).device if model is not None else torch.device("cpu")
        self.histories = Histories(data, self.cache, unknown_items, clock)
        # DeepM3 with a flow: one model per solver, sharing the weights
        flows = model is not None and getattr(model, "field", None) is not None
        self.solvers: dict[str, nn.Module] = {}
        if flows:
            own = model.options.solver
            self.solvers = {own: model}
            for method in ("euler", "rk4"):
                if method != own:
                    twin = copy.copy(model)  # shares the parameters and submodules
                    twin.options = dataclasses.replace(model.options, solver=method)
                    self.solvers[method] = twin
        self.seconds_per_request = {"euler": 0.0, "rk4": 0.0}  # running means, for auto

    @classmethod
    def from_run(
        cls, run_dir: str | Path, *, data_dir: str | None = None, device: str | None = None, **kw
    ) -> Recommender:
        """The run's best model and its data (``data_dir`` overrides where the raw files are)."""
        run_dir = Path(run_dir)
        if device is not None:
            select_device(device, option="--device")  # an unknown or absent device: one line
        plan = load_plan(run_dir, device)
        data_config = plan.config.data
        if data_dir is not None:
            data_config = dataclasses.replace(data_config, data_dir=data_dir)
        data = prepare(data_config)
        provenance = run_dir / "provenance.json"
        recorded = provenance.exists() and read_record(provenance).get("data_fingerprint")
        if recorded and recorded != data.fingerprint:
            raise ConfigError(
                f"{run_dir}: the data now prepared (fingerprint {data.fingerprint}) is not the "
                f"data this run was trained on ({recorded}); point --data-dir at the run's data"
            )
        plan, data, scorer, model = load_trained(run_dir, data, device)
        return cls(plan, data, scorer, model, **kw)

    # ----------------------------------------------------------------- requests -> histories
    # ------------------------------------------------------------------------------ scoring
    def _flow_model(self, solver: str | None) -> nn.Module:
        return self.solvers[solver] if solver in self.solvers else self.model

    @torch.no_grad()
    def _scores(self, batch: Batch, at: np.ndarray, solver: str | None) -> torch.Tensor:
        """(B, N + 1) scores; rows with ``at`` > 0 are evolved to it (DeepM3)."""
        batch = batch.to(self.device)
        if self.model is None:
            return self.scorer(batch).float()
        model = self._flow_model(solver)
        states, _ = model(batch.items, batch.timestamps, batch.time_gaps, None, batch.time_scale)
        h = states[:, -1]
        if self.solvers and (at > 0).any():
            last = batch.timestamps[:, -1]
            query = torch.as_tensor(at, device=self.device)
            gaps = gap_features(torch.where(query > 0, query - last, torch.zeros_like(last)))
            h = torch.where((query > 0)[:, None], model.advance(h, gaps, last)[0], h)
        return item_scores(h.float(), self.model.item_embedding)

    def _notes_for(self, request: Request) -> list[str]:
        notes = []
        if request.at is not None and not self.solvers:
            notes.append(f"at ignored: {self.name} does not evolve in time (only DeepM3 does)")
        if request.solver is not None and not self.solvers:
            notes.append(f"solver ignored: {self.name} has no ODE")
        return notes

    def _answer(self, request: Request, scores: torch.Tensor, seen: np.ndarray, notes, solver):
        scores = _candidates([scores], [request], [seen])[0]
        k = min(request.k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        ids = self.data.events.item_ids[top.indices.cpu().numpy()].tolist()
        values = [round(float(v), 6) for v in top.values.cpu()]
        return Recommendation(ids, values, request.user, solver, notes, request.id)

    def _solve(self, histories: list[History], solver: str | None) -> list[torch.Tensor]:
        """Scores (N + 1,) per history, computed in batches of ``batch_size``."""
        out = []
        for start in range(0, len(histories), self.batch_size):
            chunk = histories[start : start + self.batch_size]
            table = history_table(
                [h.items for h in chunk],
                [h.times for h in chunk],
                self.max_len,
                np.array([h.time_scale for h in chunk], dtype=np.int64),
                np.array([h.query for h in chunk], dtype=np.int64),
            )
            at = np.array([h.query if h.query > h.times[-1] else 0 for h in chunk])
            started = time.perf_counter()
            scores = self._scores(table.batch(np.arange(len(chunk))), at, solver)
            if solver in self.seconds_per_request:
                seconds = (time.perf_counter() - started) / len(chunk)
                mean = self.seconds_per_request[solver]
                self.seconds_per_request[solver] = 0.8 * mean + 0.2 * seconds if mean else seconds
            out.extend(scores.unbind(0))
        return out

    def _uses_cache(self, request: Request, entry: UserState | None) -> bool:
        """DeepM3 with a cached state and nothing new in the request: evolve the cached state."""
        return entry is not None and entry.state is not None and not request.events

    @torch.no_grad()
    def _cached_scores(
        self, requests: list[Request], entries: list[UserState], solver: str | None
    ) -> list[torch.Tensor]:
        """Scores (N + 1,) per request from cached states, evolved to each ``at`` in one
        batched call per ``batch_size`` users."""
        model = self._flow_model(solver)
        out = []
        for start in range(0, len(requests), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            h = torch.stack([entry.state for entry in entries[chunk]]).to(self.device)
            last = torch.tensor([entry.last_time for entry in entries[chunk]], device=self.device)
            at = [r.at if r.at is not None else 0 for r in requests[chunk]]
            query = torch.tensor(at, device=self.device)
            later = query > last
            if later.any():
                gaps = gap_features(torch.where(later, query - last, torch.zeros_like(last)))
                h = torch.where(later[:, None], model.advance(h, gaps, last)[0], h)
            out.extend(item_scores(h.float(), self.model.item_embedding).unbind(0))
        return out

    # ---------------------------------------------------------------------------- public API
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

    def recommend_many(self, requests: Sequence[Request]) -> list[Recommendation | RequestError]:
        """Answers in request order; a request that cannot be answered gets its RequestError."""
        answers: list[Recommendation | RequestError | None] = [None] * len(requests)
        histories: dict[int, tuple[History, list[str]]] = {}
        groups: dict[str | None, list[int]] = {}  # requested solver -> request numbers
        cached: dict[str | None, list[tuple[int, UserState]]] = {}  # solver -> (number, entry)
        for number, request in enumerate(requests):
            notes = self._notes_for(request)
            try:
                entry = self.cache.get(request.user) if request.user is not None else None
                if self._uses_cache(request, entry):
                    if request.at is not None and request.at < entry.last_time:
                        raise RequestError(
                            f"at ({request.at}) is earlier than the last event ({entry.last_time})"
                        )
                    cached.setdefault(self._solver_name(request.solver), []).append((number, entry))
                    continue
                histories[number] = (self.histories.history(request, notes), notes)
            except RequestError as error:
                answers[number] = error
                continue
            groups.setdefault(request.solver if self.solvers else None, []).append(number)
        for solver, pairs in cached.items():
            chosen = [requests[number] for number, _ in pairs]
            scores = self._cached_scores(chosen, [entry for _, entry in pairs], solver)
            for (number, entry), row in zip(pairs, scores, strict=True):
                request = requests[number]
                notes = self._notes_for(request)
                answers[number] = self._answer(request, row, entry.seen, notes, solver)
        for solver, numbers in groups.items():
            first = "euler" if solver == "auto" else solver
            results = dict(
                zip(numbers, self._solve([histories[n][0] for n in numbers], first), strict=True)
            )
            used = dict.fromkeys(numbers, self._solver_name(first))
            if solver == "auto":
                self._refine(numbers, requests, histories, results, used)
            for number in numbers:
                history, notes = histories[number]
                answers[number] = self._answer(
                    requests[number], results[number], history.seen, notes, used[number]
                )
        return answers

    def uncertainty(self, requests: Sequence[Request]) -> np.ndarray:
        """(R,) normalised entropy of each request's Euler scores over the items it may be
        recommended (what ``solver=auto`` compares with ``auto_threshold``)."""
        histories = [self.histories.history(request, []) for request in requests]
        scores = self._solve(histories, "euler" if self.solvers else None)
        seen = [history.seen for history in histories]
        return normalised_entropy(_candidates(scores, requests, seen)).cpu().numpy()

    def _solver_name(self, requested: str | None) -> str | None:
        """The solver that answers a request: None for models without a flow."""
        if not self.solvers:
            return None
        if requested in (None, "auto"):
            return "euler" if requested == "auto" else self.model.options.solver
        return requested

    def _refine(
        self,
        numbers: list[int],
        requests: Sequence[Request],
        histories: dict,
        results: dict,
        used: dict,
    ) -> None:
        """solver=auto: re-solve with RK4 the most uncertain answers the latency budget allows
        (the budget counts the Euler pass; RK4's cost per request is a running mean)."""
        candidates = _candidates(
            [results[n] for n in numbers],
            [requests[n] for n in numbers],
            [histories[n][0].seen for n in numbers],
        )
        uncertainty = normalised_entropy(candidates)
        ranked = torch.argsort(uncertainty, descending=True).tolist()
        chosen = [numbers[i] for i in ranked if uncertainty[i] > self.auto_threshold]
        euler = self.seconds_per_request["euler"]
        rk4 = self.seconds_per_request["rk4"] or 4 * euler
        left = self.auto_budget_ms / 1000 - euler * len(numbers)
        affordable = math.floor(left / rk4) if rk4 > 0 else len(chosen)
        chosen = chosen[: max(0, affordable)]
        if chosen:
            rescored = self._solve([histories[n][0] for n in chosen], "rk4")
            for number, scores in zip(chosen, rescored, strict=True):
                results[number], used[number] = scores, "rk4"

    def add_events(self, user: str, events: Sequence[tuple[str | int, int]]) -> dict:
        """Append (item, unix time) events to a user, known or new, and update the cached
        state: DeepM3 absorbs each event in one step; the first call replays the known history
        once. Returns the user, their number of events and notes (unknown items ignored)."""
        notes: list[str] = []
        if user is None:
            raise RequestError("add_events needs a user id")
        request = parse_request({"user": user, "events": list(events)})
        entry = self.cache.get(request.user)
        if entry is None and request.user not in self.histories.user_index and not request.events:
            raise RequestError(f"unknown user {user!r:.60} and no events")
        known = entry is not None or request.user in self.histories.user_index
        history = self.histories.history(
            Request(request.user if known else None, request.events), notes
        )
        if entry is None or not self.solvers:
            state = self._replayed_state(history) if self.solvers else None
        else:
            state = self._absorbed_state(entry, request.events)
        entry = UserState(history.seen, history.items, history.times, history.time_scale, state)
        self.cache.put(request.user, entry)
        return {"user": request.user, "events": int(len(entry.seen)), "notes": notes}

    @torch.no_grad()
    def _replayed_state(self, history: History) -> torch.Tensor:
        """(d,) DeepM3's state right after the window's last event, from a full replay."""
        table = history_table(
            [history.items], [history.times], self.max_len,
            np.array([history.time_scale]), np.array([history.query]),
        )  # fmt: skip
        batch = table.batch(np.arange(1)).to(self.device)
        states, _ = self.model(batch.items, batch.timestamps, batch.time_gaps, None, None)
        return states[0, -1].cpu()

    @torch.no_grad()
    def _absorbed_state(self, entry: UserState, events: Sequence[tuple[str, int]]) -> torch.Tensor:
        """(d,) the cached state after absorbing the known items of ``events``, one step each."""
        items, times = self.histories.items(events, [])
        h, last = entry.state[None].to(self.device), entry.last_time
        for item, stamp in zip(items.tolist(), times.tolist(), strict=True):
            previous = torch.tensor([last], device=self.device)
            gap = gap_features(torch.tensor([stamp], device=self.device) - previous)
            item_tensor = torch.tensor([item], device=self.device)
            h, last = self.model.absorb(h, item_tensor, gap, previous), stamp
        return h[0].cpu()
