"""From requests to what the model reads: raw ids mapped through the run's vocabulary, known
users' histories (the run's data, or the state cache), and every check that needs the run: time
order, future times, a query time before the last event, unknown items, empty histories; and
histories as the model's input batch (:func:`model_inputs`).

The model replays a history's last ``window`` events: the recommender's ``max_replay``, at most
``max_len`` (what the model was trained to read); a shorter replay answers sooner (the
trade-off is measured by ``benchmarks/replay_tradeoff.py``). Every item of the history is
still excluded from the recommendations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from deepm3.data.prepare import Prepared
from deepm3.data.sequences import Batch, history_table, personal_time_scales
from deepm3.recommend.requests import Request, RequestError
from deepm3.recommend.state import StateCache
from deepm3.train.serving import ServingData

UNKNOWN_ITEMS = ("ignore", "reject")
FUTURE_SLACK = 86_400  # seconds an event may lie ahead of the server's clock
MAX_LISTED = 5  # unknown item ids named in a note


@dataclasses.dataclass(frozen=True)
class History:
    """What the model reads for one request."""

    seen: np.ndarray  # (n,) int64 every item index of the user, in order (for exclusion)
    items: np.ndarray  # (<= window,) int64 the model's window: the last events' items
    times: np.ndarray  # (<= window,) int64 their unix seconds
    time_scale: int  # the user's time unit (TiSASRec), seconds
    query: int  # the time to predict for: ``at``, or the last event's time


class Histories:
    """The run's vocabulary, its known users (when its data is available), and the cache of
    users seen since."""

    def __init__(
        self,
        serving: ServingData,
        data: Prepared | None,
        cache: StateCache,
        unknown: str,
        clock: Callable[[], float],
        window: int | None = None,
    ) -> None:
        """``serving``: the run's vocabulary and ``max_len``; ``data``: its training data, or
        None where it is not available (no known users then); ``window``: the most recent
        events replayed (None: ``max_len``; more than ``max_len`` reads ``max_len``)."""
        self.data, self.cache, self.unknown, self.clock = data, cache, unknown, clock
        self.window = serving.max_len if window is None else min(window, serving.max_len)
        ids = serving.item_ids[1:].tolist()
        self.item_index = {raw: i for i, raw in enumerate(ids, start=1)}
        self.user_index: dict[str, int] = {}
        if data is not None:
            users = data.events.user_ids[1:].tolist()
            self.user_index = {raw: u for u, raw in enumerate(users, start=1)}
            self.time_scales = personal_time_scales(data)

    def _known(self, user: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(seen items, window items, window times, time scale) of a cached or known user."""
        entry = self.cache.get(user)
        if entry is not None:
            return entry.seen, entry.window_items, entry.window_times, entry.time_scale
        if self.data is None:
            raise RequestError(
                f"user {user!r:.60}: the run's data is not available here to read their "
                "history (pass --data-dir or set DEEPM3_DATA_DIR); send the user's events"
            )
        index = self.user_index.get(user)
        if index is None:
            raise RequestError(f"unknown user {user!r:.60}: send their events instead")
        events = self.data.events
        rows = slice(events.offsets[index], events.offsets[index + 1])
        scale = int(self.time_scales[index]) if index < len(self.time_scales) else 1
        items = events.items[rows]
        return items, items, events.timestamps[rows], scale

    def items(self, events: Sequence[tuple[str, int]], notes: list[str]):
        indices = [self.item_index.get(item, 0) for item, _ in events]
        unknown = [item for (item, _), index in zip(events, indices, strict=True) if not index]
        if unknown:
            listed = ", ".join(repr(item) for item in unknown[:MAX_LISTED])
            more = f" and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
            if self.unknown == "reject":
                raise RequestError(f"unknown item(s) {listed}{more}")
            notes.append(f"ignored {len(unknown)} unknown item(s): {listed}{more}")
        kept = [(index, t) for index, (_, t) in zip(indices, events, strict=True) if index]
        items = np.array([index for index, _ in kept], dtype=np.int64)
        return items, np.array([t for _, t in kept], dtype=np.int64)

    def history(self, request: Request, notes: list[str]) -> History:
        """The request's history: the known user's events, then the request's own."""
        times = [t for _, t in request.events]
        for number in range(1, len(times)):
            if times[number] < times[number - 1]:
                raise RequestError(
                    f"events must be in time order: events[{number}] ({times[number]}) is "
                    f"earlier than events[{number - 1}] ({times[number - 1]})"
                )
        if times and times[-1] > self.clock() + FUTURE_SLACK:
            raise RequestError(f"events[{len(times) - 1}] time {times[-1]} lies in the future")
        items, stamps = self.items(request.events, notes)
        seen = items
        if request.user is not None:
            seen, known_items, known_times, scale = self._known(request.user)
            if len(stamps) and len(known_times) and stamps[0] < known_times[-1]:
                raise RequestError(
                    f"events[0] ({stamps[0]}) is earlier than user {request.user!r}'s last "
                    f"known event ({known_times[-1]}): send only newer events"
                )
            seen = np.concatenate([seen, items])
            items = np.concatenate([known_items, items])
            stamps = np.concatenate([known_times, stamps])
        else:
            gaps = np.diff(stamps)
            scale = int(gaps[gaps > 0].min()) if (gaps > 0).any() else 1
        if not len(items):
            raise RequestError("no known item among the events: nothing to recommend from")
        if request.at is not None and request.at < stamps[-1]:
            raise RequestError(f"at ({request.at}) is earlier than the last event ({stamps[-1]})")
        if len(seen) > self.window:
            notes.append(f"history of {len(seen)} events truncated to the last {self.window}")
        query = int(stamps[-1]) if request.at is None else request.at
        window = slice(-self.window, None)
        return History(seen, items[window], stamps[window], scale, query)


def model_inputs(histories: Sequence[History], length: int) -> tuple[Batch, np.ndarray]:
    """One batch of B histories (each its last ``length`` events, left-padded to ``length``),
    and (B,) int64 the query time of each row that asks to evolve past its last event (0 for
    the others)."""
    table = history_table(
        [h.items for h in histories],
        [h.times for h in histories],
        length,
        np.array([h.time_scale for h in histories], dtype=np.int64),
        np.array([h.query for h in histories], dtype=np.int64),
    )
    at = np.array([h.query if h.query > h.times[-1] else 0 for h in histories])
    return table.batch(np.arange(len(histories))), at
