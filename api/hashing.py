"""Password hashing with a ceiling per process: memory, not CPU, is what login floods
exhaust.

An argon2 hash holds its memory cost (19 MiB, `shared.security`) while it runs, and
FastAPI's threadpool would otherwise run up to 40 logins at once. `PasswordHashing`
admits at most `V2M_LOGIN_HASH_CONCURRENCY` hashes at a time; a login waits up to
`V2M_LOGIN_HASH_WAIT_S` for a turn, else it is answered 503 `server_busy` with
Retry-After. The hashes run on that many dedicated threads, so the C allocator's
per-thread arenas, which keep freed memory for reuse, are that many and no more.
Unknown emails and wrong passwords take a turn like any other login, so they cost the
same time and count against the same bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shared.errors import BusyError
from shared.security import hash_password, password_needs_rehash, verify_password

T = TypeVar("T")


class PasswordHashing:
    def __init__(self, *, concurrency: int, wait_s: float) -> None:
        self._slots = threading.BoundedSemaphore(concurrency)
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2")
        self._wait_s = wait_s

    def _run(self, fn: Callable[..., T], *args: object) -> T:
        if not self._slots.acquire(timeout=self._wait_s):
            raise BusyError(
                "Too many sign-ins are being checked at once; try again in a moment.",
                retry_after_s=1,
            )
        try:
            return self._threads.submit(fn, *args).result()
        finally:
            self._slots.release()

    def verify(self, password: str, password_hash: str | None) -> bool:
        """Whether `password` matches; an account without a hash costs the same time."""
        return self._run(verify_password, password, password_hash)

    def rehash_if_needed(self, password: str, password_hash: str) -> str | None:
        """A hash with the current parameters when `password_hash` has others, else None."""
        if not password_needs_rehash(password_hash):
            return None
        return self._run(hash_password, password)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
