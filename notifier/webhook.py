"""One webhook attempt: the Standard Webhooks request, signed, sent with httpx.

The body is `{"type", "timestamp", "data"}` with the job as `GET /v1/jobs/{id}` returns
it. `webhook-id` is the event's id (the same on every attempt), `webhook-timestamp` the
time of this attempt, and `webhook-signature` one `v1,<base64>` per signing secret, made
by the `standardwebhooks` package. Redirects are not followed (a 3xx is a failure) and
the response body is never read beyond what httpx buffers, nor stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import httpx
from standardwebhooks import Webhook

from shared.models import as_utc, utcnow
from shared.schemas import JobPublic

USER_AGENT = "video2mp3-webhooks/1"


@dataclass(frozen=True)
class Result:
    ok: bool
    status_code: int | None = None
    error: str | None = None


def body(event_type: str, event_at: datetime, job: JobPublic) -> str:
    at = as_utc(event_at)
    assert at is not None
    event = {
        "type": event_type,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": job.model_dump(mode="json"),
    }
    return json.dumps(event, separators=(",", ":"))


def headers(event_id: str, payload: str, secrets: list[str]) -> dict[str, str]:
    now = utcnow()
    signatures = " ".join(Webhook(s).sign(event_id, now, payload) for s in secrets)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
    }


def send(client: httpx.Client, url: str, payload: str, hdrs: dict[str, str]) -> Result:
    try:
        response = client.post(url, content=payload.encode(), headers=hdrs)
    except httpx.TimeoutException:
        return Result(ok=False, error="timeout")
    except httpx.HTTPError as exc:
        return Result(ok=False, error=f"connection_error: {type(exc).__name__}")
    if 200 <= response.status_code < 300:
        return Result(ok=True, status_code=response.status_code)
    return Result(ok=False, status_code=response.status_code, error=f"http_{response.status_code}")


def make_client(timeout_s: float) -> httpx.Client:
    return httpx.Client(follow_redirects=False, timeout=httpx.Timeout(timeout_s), trust_env=False)
