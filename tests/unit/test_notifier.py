"""The notifier's webhook request and email message, built without a network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

from standardwebhooks import Webhook

from notifier import mail, webhook
from shared.models import Job, JobStatus
from shared.notify_settings import new_secret
from shared.schemas import JobPublic


def finished_job(status: JobStatus = JobStatus.completed) -> JobPublic:
    job = Job(
        id="job-1",
        owner_id="u",
        upload_id="up",
        input_key="k",
        input_filename="holiday.mov",
        input_size_bytes=10,
        status=status,
        output_size_bytes=5,
        output_duration_s=1.5,
        error_code="no_audio_stream" if status == JobStatus.failed else None,
        error_message="The file has no audio." if status == JobStatus.failed else None,
    )
    return JobPublic.from_job(job)


def test_webhook_body_is_the_event_with_the_job_as_the_api_returns_it() -> None:
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    job = finished_job()
    body = json.loads(webhook.body("job.completed", at, job))
    assert body["type"] == "job.completed"
    assert body["timestamp"] == "2026-12-07T12:00:00Z"
    assert body["data"] == json.loads(job.model_dump_json())


def test_webhook_headers_verify_with_standardwebhooks_for_each_secret() -> None:
    current, previous = new_secret(), new_secret()
    payload = webhook.body("job.completed", datetime.now(UTC), finished_job())
    headers = webhook.headers("msg_abc", payload, [current, previous])

    assert headers["webhook-id"] == "msg_abc"
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (current, previous):
        assert Webhook(secret).verify(payload, headers)["data"]["id"] == "job-1"


def test_webhook_signature_is_hmac_sha256_of_id_timestamp_and_body() -> None:
    secret = new_secret()
    payload = webhook.body("job.failed", datetime.now(UTC), finished_job(JobStatus.failed))
    headers = webhook.headers("msg_x", payload, [secret])
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"msg_x.{headers['webhook-timestamp']}.{payload}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_email_names_the_file_and_links_to_the_job_on_the_page() -> None:
    msg = mail.build(
        job=finished_job(),
        to="ada@example.com",
        sender="v2m <n@x>",
        public_url="https://v2m.example/",
    )
    assert "holiday.mov" in msg["Subject"]
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert "https://v2m.example/#job=job-1" in text.get_content()
    assert 'href="https://v2m.example/#job=job-1"' in html.get_content()


def test_email_of_a_failed_job_says_why() -> None:
    msg = mail.build(
        job=finished_job(JobStatus.failed), to="a@x", sender="n@x", public_url="http://localhost"
    )
    assert "failed" in msg["Subject"]
    body = msg.get_body(("plain",))
    assert body is not None
    assert "The file has no audio." in body.get_content()
