"""Completed jobs, serialised, for GET /v1/jobs/{id}: a completed job never changes.

Only `completed` jobs: every other status is still written by workers, and a `failed`
job can be put back in the queue by an operator (`python -m worker.dlq replay`), so
those are always read from the database. Used from the event loop only.
"""

from __future__ import annotations

from collections import OrderedDict


class CompletedJobCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    def get(self, job_id: str) -> tuple[str, bytes] | None:
        """(owner id, JSON body) of a cached completed job."""
        item = self._items.get(job_id)
        if item is not None:
            self._items.move_to_end(job_id)
        return item

    def put(self, job_id: str, owner_id: str, body: bytes) -> None:
        if self.max_entries <= 0:
            return
        self._items[job_id] = (owner_id, body)
        self._items.move_to_end(job_id)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
