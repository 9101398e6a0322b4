"""A bounded cache of users' states, for serving events as they arrive.

An ODE-RNN absorbs a new event in one step (:meth:`deepm3.models.deepm3.DeepM3.absorb`), so
DeepM3's cached entry holds the state right after the user's last event; a query evolves that
state to its time instead of replaying the history (a model that ``absorbs_events``, the model
contract's capability). Other models have no such state: their entry keeps the last ``max_len``
events, which a query replays (and a model with a flow, timeattn, evolves to the query time).
Every entry keeps the ids of all the user's items (to exclude them from recommendations).

Memory per user, stated by :meth:`UserState.nbytes`: ``4 d`` bytes of state (float32), 16 bytes
per event of the replay window (item and time, int64; at most ``max_replay`` events, replayed by
a request that adds events, and by every request of a model without a state) and 8 bytes per
item seen, plus Python objects (8.5 KB per user in all on ML-1M: docs/serving.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from deepm3.recommend.requests import Request


@dataclass
class UserState:
    """What the cache holds for one user."""

    seen: np.ndarray  # (n,) int64 every item index the user has had, in order
    window_items: np.ndarray  # (<= max_len,) int64 the last events' items
    window_times: np.ndarray  # (<= max_len,) int64 their unix seconds
    time_scale: int  # the user's time unit (TiSASRec), seconds
    state: torch.Tensor | None = None  # (d,) right after the last event (DeepM3 only)

    @property
    def last_time(self) -> int:
        return int(self.window_times[-1])

    def nbytes(self) -> int:
        state = 0 if self.state is None else self.state.numel() * self.state.element_size()
        return state + self.seen.nbytes + self.window_items.nbytes + self.window_times.nbytes


def uses_cached_state(entry: UserState | None, request: Request) -> bool:
    """Whether ``request`` is answered from its user's cached state (evolved to its time)
    instead of a replay: the user has a state (a model with a flow) and the request adds no
    events."""
    return entry is not None and entry.state is not None and not request.events


class StateCache:
    """Least recently used users first out, at most ``capacity`` users."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the state cache needs a capacity >= 1, got {capacity}")
        self.capacity = capacity
        self._users: OrderedDict[str, UserState] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, user: str) -> bool:
        return user in self._users

    def get(self, user: str) -> UserState | None:
        entry = self._users.get(user)
        if entry is not None:
            self._users.move_to_end(user)
        return entry

    def put(self, user: str, entry: UserState) -> None:
        self._users[user] = entry
        self._users.move_to_end(user)
        while len(self._users) > self.capacity:
            self._users.popitem(last=False)
            self.evictions += 1

    def nbytes(self) -> int:
        return sum(entry.nbytes() for entry in self._users.values())
