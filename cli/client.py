"""The video2mp3 API over httpx: JSON calls, the events stream, and transfers to storage.

Every library error is translated here into cli.errors. A 429 (or a 503 carrying
Retry-After) is retried by tenacity after the server's Retry-After, and each wait is
announced through ``on_wait`` so the user sees why nothing moves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from httpx_sse import connect_sse
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_delay

from cli import __version__
from cli.auth import BearerAuth
from cli.config import Settings, save_tokens
from cli.errors import (
    ApiError,
    AuthenticationError,
    CancelledError,
    StorageError,
    UnreachableError,
)

Job = dict[str, Any]
TERMINAL = ("completed", "failed")
CHUNK = 256 * 1024
MAX_RATE_LIMIT_WAIT_S = 900
# Reads of the events stream wait past the API's 15-second keep-alive comments.
TIMEOUT = httpx.Timeout(30.0, read=60.0)
Waiter = Callable[[float, str], None]  # (seconds, why)
Progress = Callable[[int, int], None]  # (bytes just moved, total bytes)


def retry_after_s(response: httpx.Response) -> float:
    """Retry-After as seconds (a number or an HTTP date); 1 s when absent or unreadable."""
    value = response.headers.get("Retry-After", "")
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an API error body, or of any other answer."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:300] or response.reason_phrase
        return f"http_{response.status_code}", text


def _must_wait(response: httpx.Response) -> bool:
    return response.status_code == 429 or (
        response.status_code == 503 and "Retry-After" in response.headers
    )


@contextmanager
def reaching(what: str, hint: str = "") -> Iterator[None]:
    """Connection failures and timeouts as UnreachableError naming ``what``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UnreachableError(f"{what} did not answer in time ({type(exc).__name__}).") from exc
    except httpx.TransportError as exc:
        raise UnreachableError(f"Cannot reach {what}: {exc or type(exc).__name__}.{hint}") from exc


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


@dataclass(frozen=True)
class ApiClient:
    """One API (``api``) and storage (``storage``, presigned URLs: no credentials) client,
    shared by every file's thread; ``for_file`` gives a view with that file's waiter."""

    api_url: str
    api: httpx.Client
    storage: httpx.Client
    cancel: threading.Event = field(default_factory=threading.Event)
    on_wait: Waiter | None = None

    @classmethod
    def open(cls, settings: Settings) -> ApiClient:
        headers = {"User-Agent": f"v2m/{__version__}"}
        auth = BearerAuth(
            settings.credentials,
            f"{settings.api_url}/v1/auth/refresh",
            lambda access, refresh: save_tokens(settings.api_url, access, refresh),
        )
        api = httpx.Client(
            base_url=settings.api_url,
            auth=auth,
            headers=headers,
            timeout=TIMEOUT,
            transport=httpx.HTTPTransport(retries=2),  # connection attempts only
        )
        storage = httpx.Client(
            headers=headers, timeout=TIMEOUT, transport=httpx.HTTPTransport(retries=2)
        )
        return cls(settings.api_url, api, storage)

    def close(self) -> None:
        self.api.close()
        self.storage.close()

    def for_file(self, on_wait: Waiter) -> ApiClient:
        return replace(self, on_wait=on_wait)

    # ----------------------------------------------------------------- plumbing

    def sleep(self, seconds: float) -> None:
        """Wait, unless Ctrl-C comes first (CancelledError)."""
        if self.cancel.wait(seconds):
            raise CancelledError("Interrupted.")

    def _announce(self, state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        code, message = error_of(state.outcome.result())
        why = f"the API is limiting requests ({code}: {message})"
        if self.on_wait is not None:
            self.on_wait(state.next_action.sleep, why)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call: waits out 429s, raises AuthenticationError/ApiError on errors."""
        retrying = Retrying(
            retry=retry_if_result(_must_wait),
            wait=lambda state: retry_after_s(state.outcome.result()) if state.outcome else 1.0,
            stop=stop_after_delay(MAX_RATE_LIMIT_WAIT_S),
            sleep=self.sleep,
            before_sleep=self._announce,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        hint = " Is it running? Check --api-url or V2M_API_URL."
        with reaching(f"the API at {self.api_url}", hint):
            response: httpx.Response = retrying(self.api.request, method, path, **kwargs)
        self.raise_for(response)
        return response

    def raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        code, message = error_of(response)
        if response.status_code == 401:
            raise AuthenticationError(
                f"The API at {self.api_url} refused the credentials ({message}) "
                "Run `v2m login`, or check --api-key / V2M_API_KEY."
            )
        raise ApiError(response.status_code, code, message)

    # ----------------------------------------------------------------- API calls

    def me(self) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", "/v1/auth/me").json()
        return body

    def check_options(self, options: dict[str, Any]) -> None:
        """Options the API refuses (422) raise before anything is uploaded.

        POST /v1/jobs validates its body before it looks the upload up, so a made-up
        upload id answers 404 `upload_not_found` exactly when the options are valid."""
        try:
            self.request(
                "POST", "/v1/jobs", json={"upload_id": "options-check", "options": options}
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    def create_upload(self, filename: str, content_type: str, size_bytes: int) -> dict[str, Any]:
        body = {"filename": filename, "content_type": content_type, "size_bytes": size_bytes}
        grant: dict[str, Any] = self.request("POST", "/v1/uploads", json=body).json()
        return grant

    def create_job(self, upload_id: str, options: dict[str, Any], key: str) -> tuple[Job, bool]:
        """The job and whether the API replayed an earlier one for ``key`` (no new job)."""
        response = self.request(
            "POST",
            "/v1/jobs",
            json={"upload_id": upload_id, "options": options},
            headers={"Idempotency-Key": key},
        )
        return response.json(), response.headers.get("Idempotent-Replayed") == "true"

    def get_job(self, job_id: str) -> Job:
        job: Job = self.request("GET", f"/v1/jobs/{job_id}").json()
        return job

    def list_jobs(self, status: str | None, limit: int) -> list[Job]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        items: list[Job] = self.request("GET", "/v1/jobs", params=params).json()["items"]
        return items

    def follow(self, job: Job, on_update: Callable[[Job], None]) -> Job:
        """Follow a job through its events stream until it is completed or failed.

        A stream that ends or breaks early is read again from GET /v1/jobs/{id}."""
        while job["status"] not in TERMINAL:
            try:
                with (
                    reaching(f"the API at {self.api_url}"),
                    connect_sse(self.api, "GET", f"/v1/jobs/{job['id']}/events") as source,
                ):
                    if source.response.status_code != 200:
                        source.response.read()
                        self.raise_for(source.response)
                    for event in source.iter_sse():
                        if self.cancel.is_set():
                            raise CancelledError("Interrupted.")
                        if event.event == "job":
                            job = event.json()
                            on_update(job)
                            if job["status"] in TERMINAL:
                                return job
            except UnreachableError:
                self.sleep(1.0)  # the stream broke: read the job, then listen again
            job = self.get_job(job["id"])
            on_update(job)
        return job

    # ----------------------------------------------------------------- transfers

    def put_file(self, grant: dict[str, Any], path: Path, progress: Progress) -> None:
        """PUT the file to the presigned URL with the signed headers, streamed in chunks."""
        total = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    if self.cancel.is_set():
                        raise CancelledError("Interrupted.")
                    yield chunk
                    progress(len(chunk), total)

        with reaching(f"storage at {_host(grant['url'])}"):
            response = self.storage.request(
                grant.get("method", "PUT"), grant["url"], content=chunks(), headers=grant["headers"]
            )
        if response.status_code >= 300:
            raise StorageError(
                f"Storage refused the upload ({response.status_code}): {response.text[:300]}"
            )

    def download(self, job_id: str, dest: Path, progress: Progress, overwrite: bool) -> int:
        """Save the job's output to ``dest`` through a ``.part`` file; the bytes written."""
        redirect = self.request("GET", f"/v1/jobs/{job_id}/download")
        location = redirect.headers.get("location")
        if redirect.status_code != 307 or not location:
            raise ApiError(redirect.status_code, "no_redirect", "The API gave no download URL.")
        part = dest.with_name(dest.name + ".part")
        written = 0
        try:
            with (
                reaching(f"storage at {_host(location)}"),
                self.storage.stream("GET", location) as got,
            ):
                if got.status_code != 200:
                    got.read()
                    raise StorageError(
                        f"Storage refused the download ({got.status_code}): {got.text[:300]}"
                    )
                total = int(got.headers.get("Content-Length", 0))
                with part.open("wb") as out:
                    for chunk in got.iter_bytes(CHUNK):
                        if self.cancel.is_set():
                            raise CancelledError("Interrupted.")
                        out.write(chunk)
                        written += len(chunk)
                        progress(len(chunk), total)
            if dest.exists() and not overwrite:
                raise StorageError(f"{dest} appeared meanwhile; not overwritten (--overwrite).")
            part.replace(dest)
        finally:
            part.unlink(missing_ok=True)
        return written


def login(api_url: str, email: str, password: str) -> dict[str, Any]:
    """POST /v1/auth/login → the token pair."""
    with httpx.Client(base_url=api_url, timeout=TIMEOUT) as http:
        with reaching(f"the API at {api_url}", " Is it running? Check --api-url."):
            response = http.post("/v1/auth/login", json={"email": email, "password": password})
    if response.status_code != 200:
        code, message = error_of(response)
        if response.status_code == 401:
            raise AuthenticationError(message)
        raise ApiError(response.status_code, code, message)
    pair: dict[str, Any] = response.json()
    return pair
