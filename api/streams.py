"""How many event streams each user holds open in this API process.

A stream costs a connection held open and a database read every poll interval, so a
user gets `V2M_EVENTS_STREAMS_PER_USER` at once (per process; behind several replicas
the ceiling is that times the replicas). Only the event loop touches the counts.
"""

from __future__ import annotations

from collections import Counter


class StreamSlots:
    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._open: Counter[str] = Counter()

    def acquire(self, user_id: str) -> bool:
        if self._open[user_id] >= self.per_user:
            return False
        self._open[user_id] += 1
        return True

    def release(self, user_id: str) -> None:
        self._open[user_id] -= 1
        if self._open[user_id] <= 0:
            del self._open[user_id]

    def open(self, user_id: str) -> int:
        return self._open[user_id]
