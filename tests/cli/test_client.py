"""The API client against an in-memory API: waits, errors users understand, the events
stream, downloads, token refresh."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from cli.auth import BearerAuth
from cli.client import ApiClient, retry_after_s
from cli.config import Credentials
from cli.errors import ApiError, AuthenticationError, StorageError, UnreachableError
from tests.cli.fake_api import API, FakeApi, error


class RecordingEvent(threading.Event):
    """A cancel event whose waits return at once and are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return False


def test_rate_limited_call_waits_the_retry_after_and_says_why() -> None:
    # Given an API that answers 429 twice, with Retry-After 7 then 3
    fake = FakeApi()
    limited = iter([7, 3])

    def before(request: httpx.Request) -> httpx.Response | None:
        seconds = next(limited, None)
        if seconds is None:
            return None
        return error(
            429, "rate_limited", "Too many uploads this minute.", **{"Retry-After": str(seconds)}
        )

    fake.before = before
    cancel = RecordingEvent()
    told: list[tuple[float, str]] = []
    client = fake.client()
    client = ApiClient(client.api_url, client.api, client.storage, cancel).for_file(
        lambda seconds, why: told.append((seconds, why))
    )
    # When the client asks who it is
    me = client.me()
    # Then it slept each Retry-After, told why, and got the answer
    assert me["email"] == "ada@example.com"
    assert cancel.waits == [7, 3]
    assert [s for s, _ in told] == [7, 3]
    assert "rate_limited: Too many uploads this minute." in told[0][1]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "12"})) == 12
    assert retry_after_s(httpx.Response(429)) == 1.0
    past = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_s(past) == 0.0


def test_refused_key_says_to_log_in() -> None:
    fake = FakeApi()
    client = fake.client()
    client.api.headers["Authorization"] = "Bearer v2m_wrong"
    with pytest.raises(AuthenticationError) as caught:
        client.me()
    assert "v2m login" in caught.value.message
    assert caught.value.exit_code == 2


def test_unreachable_api_is_named_with_a_hint() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    api = httpx.Client(base_url=API, transport=httpx.MockTransport(refuse))
    client = ApiClient(API, api, httpx.Client())
    with pytest.raises(UnreachableError) as caught:
        client.me()
    assert f"Cannot reach the API at {API}" in caught.value.message
    assert "V2M_API_URL" in caught.value.message


def test_options_the_api_refuses_surface_its_message_before_any_upload() -> None:
    fake = FakeApi()
    client = fake.client()
    client.check_options({"quality": 2})  # valid: the made-up upload answers 404
    with pytest.raises(ApiError) as caught:
        client.check_options({"format": "flac"})
    assert caught.value.status == 422
    assert "options.format" in caught.value.message
    assert fake.count("PUT") == 0 and not fake.uploads


def test_follow_ends_with_the_finished_job_from_the_events_stream() -> None:
    fake = FakeApi()
    client = fake.client()
    fake.jobs["j1"] = {"id": "j1", "status": "completed", "progress": 100}
    seen: list[str] = []
    job = client.follow({"id": "j1", "status": "queued"}, lambda j: seen.append(j["status"]))
    assert job["status"] == "completed"
    assert seen == ["completed"]


def test_follow_reads_the_job_again_when_the_stream_ends_early() -> None:
    # Given a stream that closes while the job still processes, then a finished job
    fake = FakeApi()
    fake.jobs["j1"] = {"id": "j1", "status": "processing", "progress": 40}

    def before(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/events"):
            fake.jobs["j1"] = {"id": "j1", "status": "completed", "progress": 100}
            return httpx.Response(200, text=": keep-alive\n\n")
        return None

    fake.before = before
    seen: list[tuple[str, int]] = []
    job = fake.client().follow(
        {"id": "j1", "status": "queued"}, lambda j: seen.append((j["status"], j["progress"]))
    )
    assert job["status"] == "completed"
    assert seen == [("completed", 100)]


def test_download_saves_the_output_and_never_replaces_a_file_that_appeared(
    tmp_path: Path,
) -> None:
    fake = FakeApi()
    fake.jobs["j1"] = {"id": "j1", "status": "completed", "progress": 100}
    fake.objects["outputs/j1"] = b"ID3 an mp3"
    client = fake.client()
    moved: list[int] = []
    dest = tmp_path / "a.mp3"
    assert client.download("j1", dest, lambda n, total: moved.append(n), False) == 10
    assert dest.read_bytes() == b"ID3 an mp3" and sum(moved) == 10
    fake.objects["outputs/j1"] = b"ID3 other"
    with pytest.raises(StorageError):
        client.download("j1", dest, lambda n, total: None, False)
    assert dest.read_bytes() == b"ID3 an mp3"
    assert not list(tmp_path.glob("*.part"))


def test_expired_access_token_is_refreshed_once_and_kept() -> None:
    # Given an API that accepts only the refreshed access token
    refreshes: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/refresh":
            refreshes.append(request.read().decode())
            return httpx.Response(200, json={"access_token": "new", "refresh_token": "r2"})
        if request.headers["Authorization"] == "Bearer new":
            return httpx.Response(200, json={"email": "ada@example.com"})
        return error(401, "unauthenticated", "The token has expired.")

    saved: list[tuple[str, str]] = []
    auth = BearerAuth(
        Credentials(access_token="old", refresh_token="r1"),
        f"{API}/v1/auth/refresh",
        lambda access, refresh: saved.append((access, refresh)),
    )
    api = httpx.Client(base_url=API, auth=auth, transport=httpx.MockTransport(handle))
    client = ApiClient(API, api, httpx.Client())
    # When two calls are made
    assert client.me()["email"] == "ada@example.com"
    assert client.me()["email"] == "ada@example.com"
    # Then the token was refreshed once, with the refresh token, and handed to be saved
    assert len(refreshes) == 1 and '"r1"' in refreshes[0]
    assert saved == [("new", "r2")]


def test_a_refused_refresh_token_is_an_authentication_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return error(401, "unauthenticated", "The token has expired.")

    auth = BearerAuth(
        Credentials(access_token="old", refresh_token="r1"), f"{API}/v1/auth/refresh", print
    )
    api = httpx.Client(base_url=API, auth=auth, transport=httpx.MockTransport(handle))
    with pytest.raises(AuthenticationError):
        ApiClient(API, api, httpx.Client()).me()
