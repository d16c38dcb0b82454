"""Per-job phase timings for the canonical ``job_completed`` log line.

``start()`` at the beginning of a job, then ``mark("phase")`` after each phase: the time
since the previous mark is added to that phase. Kept in a context variable, so the code in
between needs no extra parameters; a mark with no job started records nothing.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

_PHASES: ContextVar[tuple[dict[str, float], list[float]] | None] = ContextVar(
    "v2m_job_phases", default=None
)


def start() -> None:
    _PHASES.set(({}, [time.perf_counter()]))


def mark(name: str) -> None:
    state = _PHASES.get()
    if state is None:
        return
    phases, last = state
    now = time.perf_counter()
    phases[name] = phases.get(name, 0.0) + (now - last[0]) * 1000
    last[0] = now


def phases_ms() -> dict[str, float]:
    state = _PHASES.get()
    return {name: round(ms, 1) for name, ms in state[0].items()} if state else {}
