"""Login floods against a real API process: memory stays bounded, limits hold across
parallel requests on PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import StackFactory

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def post_logins(url: str, bodies: list[dict[str, str]], at_once: int) -> list[int]:
    with httpx.Client(base_url=url, timeout=120) as api, ThreadPoolExecutor(at_once) as pool:
        return list(
            pool.map(lambda body: api.post("/v1/auth/login", json=body).status_code, bodies)
        )


def test_a_flood_of_logins_with_random_emails_keeps_the_api_memory_bounded(
    make_stack: StackFactory,
) -> None:
    # Given an API whose per-address limit is out of the way (the flood of a botnet)
    stack = make_stack(workers=0, login_failures_per_ip="100000")
    api = next(p for p in stack.procs if p.name == "api")
    pid = api.popen.pid
    assert post_logins(stack.api_url, [{"email": "warm@example.com", "password": "x"}], 1) == [401]
    before = memory_kib(pid, "VmRSS")
    # When 200 logins with random emails arrive, 40 at a time
    bodies = [{"email": f"{uuid.uuid4().hex}@example.com", "password": "guess"} for _ in range(200)]
    codes = post_logins(stack.api_url, bodies, 40)
    peak, after = memory_kib(pid, "VmHWM"), memory_kib(pid, "VmRSS")
    print(  # the figure docs/SECURITY.md quotes
        f"api rss before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, "
        f"after {after / 1024:.0f} MiB; answers {sorted(set(codes))}"
    )
    # Then every login was answered (wrong, or come back shortly), never a crash
    assert set(codes) <= {401, 503}
    assert codes.count(401) > 0
    # And the process's peak memory grew by less than 150 MB
    assert (peak - before) * 1024 < 150 * 1000 * 1000


def test_parallel_wrong_logins_never_pass_the_limit_on_postgresql(
    make_stack: StackFactory, postgres_url: str
) -> None:
    stack = make_stack(
        workers=0,
        database_url=postgres_url,
        login_failures_allowed="3",
        login_backoff_base_s="60",
    )
    wrong = {"email": "dev@localhost", "password": "not the password"}
    codes = post_logins(stack.api_url, [wrong] * 12, 12)
    assert sorted(codes) == [401] * 3 + [429] * 9
