"""Accounts end to end: isolation between users, limits across API processes, fuzzing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import BIN, Stack, StackFactory
from tests.unit.test_refused_input import NUL_REQUESTS

pytestmark = pytest.mark.integration


def admin(stack: Stack, *args: str) -> str:
    return stack.run_module("api.admin", *args)


def second_user(stack: Stack, email: str = "bob@example.com") -> str:
    admin(stack, "create-user", email, "--no-password")
    return admin(stack, "create-key", email, "--name", "test").strip().splitlines()[-1]


def test_users_never_see_or_use_each_others_work(
    make_stack: StackFactory, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    # Given Ada (the stack's user) with a converted job and a spare upload
    stack = make_stack(workers=1)
    ada_job = stack.convert(sample("short_clip"), "ada.mp4", "video/mp4")
    assert ada_job["status"] == "completed"
    spare = stack.upload(sample("short_clip"), "spare.mp4", "video/mp4")
    bob = second_user(stack)
    with stack.client(api_key=bob) as api:
        # Then Bob cannot read, list, follow or download Ada's job, nor use her upload
        assert api.get(f"/v1/jobs/{ada_job['id']}").json()["error"]["code"] == "job_not_found"
        assert api.get(f"/v1/jobs/{ada_job['id']}/download").status_code == 404
        assert api.get(f"/v1/jobs/{ada_job['id']}/events").status_code == 404
        assert api.get("/v1/jobs").json()["items"] == []
        reuse = api.post("/v1/jobs", json={"upload_id": spare})
        assert reuse.status_code == 404 and reuse.json()["error"]["code"] == "upload_not_found"
        # And his own work lands under his own prefix
        me = api.get("/v1/auth/me").json()
    bob_job = stack.convert(sample("short_clip"), "bob.mp4", "video/mp4", api_key=bob)
    assert bob_job["status"] == "completed"
    keys = stack.output_keys()
    assert f"outputs/{me['id']}/{bob_job['id']}.mp3" in keys
    assert stack.output_key(ada_job["id"]) in keys


def test_unauthenticated_requests_are_refused_over_http(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0)
    resp = httpx.get(f"{stack.api_url}/v1/jobs", timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthenticated"
    login = httpx.post(
        f"{stack.api_url}/v1/auth/login",
        json={"email": "dev@localhost", "password": stack.env["V2M_DEV_PASSWORD"]},
        timeout=10,
    )
    token = login.json()["access_token"]
    assert (
        httpx.get(
            f"{stack.api_url}/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).status_code
        == 200
    )


def test_upload_rate_limit_holds_across_two_api_processes(make_stack: StackFactory) -> None:
    # Given two API processes sharing one database
    stack = make_stack(workers=0, uploads_per_minute="3")
    first_url = stack.api_url
    stack.start_api()
    second_url = stack.api_url
    assert first_url != second_url
    body = {"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10}
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    # When the user's uploads alternate between them
    codes = [
        httpx.post(f"{url}/v1/uploads", json=body, headers=headers, timeout=10)
        for url in (first_url, second_url, first_url, second_url)
    ]
    # Then the fourth, wherever it lands, is refused with a time to come back
    assert [r.status_code for r in codes] == [201, 201, 201, 429]
    assert codes[-1].json()["error"]["code"] == "rate_limited"
    assert 1 <= int(codes[-1].headers["retry-after"]) <= 60


def test_concurrent_jobs_never_pass_the_active_jobs_limit_on_postgresql(
    make_stack: StackFactory, postgres_url: str, tmp_path: Path
) -> None:
    # Given a user allowed two active jobs, no worker, and eight uploads ready
    stack = make_stack(workers=0, database_url=postgres_url, max_active_jobs="2")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 1024)
    uploads = [stack.upload(clip, f"clip{n}.mp4", "video/mp4") for n in range(8)]
    # When all eight jobs are asked for at once
    with stack.client() as api, ThreadPoolExecutor(len(uploads)) as pool:
        answers = list(pool.map(lambda u: api.post("/v1/jobs", json={"upload_id": u}), uploads))
    # Then two are queued and the rest told to wait
    assert sorted(a.status_code for a in answers) == [202] * 2 + [429] * 6
    with stack.client() as api:
        assert len(api.get("/v1/jobs").json()["items"]) == 2


def test_nul_characters_are_refused_not_a_server_error_on_postgresql(
    make_stack: StackFactory, postgres_url: str
) -> None:
    # PostgreSQL text cannot hold NUL: each of these was a 500 before the API refused them
    stack = make_stack(workers=0, database_url=postgres_url)
    with stack.client() as api:
        for method, path, body, status in NUL_REQUESTS:
            response = api.request(method, path, json=body)
            assert response.status_code == status, (path, response.text)
            assert response.json()["error"]["code"] in (
                "validation_error",
                "invalid_cursor",
                "job_not_found",
            )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_schemathesis_finds_no_server_error(
    make_stack: StackFactory, tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    stack = make_stack(workers=1, database_url=url)
    cli = shutil.which("schemathesis", path=str(BIN)) or shutil.which("schemathesis")
    assert cli, "schemathesis is not installed: run `make install-python`"
    result = subprocess.run(
        [
            cli,
            "run",
            f"{stack.api_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "-H",
            f"Authorization: Bearer {stack.api_key}",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,  # it writes a .schemathesis/ folder where it runs
    )
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    api_log = next(p for p in stack.procs if p.name == "api").log_path.read_text()
    assert "unhandled_exception" not in api_log, api_log[-3000:]
