"""Notifications end to end: worker → events exchange → notifier → a real HTTP receiver
and a real SMTP server (aiosmtpd), with the delivery history read back through the API."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks import Webhook

from tests.integration.conftest import ROOT, Stack, StackFactory, free_port, port_open, wait_for

pytestmark = pytest.mark.integration

#: Retries in fractions of a second instead of minutes.
FAST_RETRIES = {
    "webhook_allow_private_targets": "true",
    "notify_backoff_base_s": "0.2",
    "notify_backoff_factor": "2",
    "notify_poll_interval_s": "0.2",
}


@dataclass
class Receiver:
    """A webhook receiver on this machine that answers 500 to the first `fail_first`
    requests, then 204; `hold_first` keeps the first request open until released."""

    fail_first: int = 0
    hold_first: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def succeeded(self) -> int:
        return max(0, len(self.requests) - self.fail_first - int(self.hold_first))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            number = len(state.requests)
            if state.hold_first and number == 1:
                state.release.wait(60)
                return
            self.send_response(500 if number <= state.fail_first else 204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    state.url = f"http://localhost:{server.server_port}/hooks/v2m"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def _deliveries(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    with stack.client() as api:
        response = api.get(f"/v1/jobs/{job_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _secret(stack: Stack) -> str:
    with stack.client() as api:
        secret: str = api.get("/v1/account/webhook-secret").json()["secret"]
    return secret


def test_webhook_failing_at_first_is_retried_until_delivered_signed_with_one_webhook_id(
    make_stack: StackFactory, sample: Callable[[str], Path], receiver: Receiver
) -> None:
    # Given a receiver that fails the first two attempts
    receiver.fail_first = 2
    stack = make_stack(**FAST_RETRIES)
    stack.start_notifier()
    # When a job asking for a webhook completes
    upload_id = stack.upload(sample("short_clip"), "talk.mp4", "video/mp4")
    job = stack.create_job(upload_id, notify={"webhook_url": receiver.url})
    assert stack.wait_finished(job["id"])["status"] == "completed"
    wait_for(lambda: receiver.succeeded() == 1, 60, "the webhook to be delivered")
    # Then every attempt carried the same webhook-id, and the last verifies
    headers, body = receiver.requests[-1]
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1
    event = Webhook(_secret(stack)).verify(body, headers)
    assert event["type"] == "job.completed"
    assert event["data"]["id"] == job["id"]
    assert event["data"]["status"] == "completed"
    # And the deliveries list shows two failures and one success
    wait_for(lambda: len(_deliveries(stack, job["id"])) == 3, 30, "the outcome to be recorded")
    items = _deliveries(stack, job["id"])
    assert [(i["status"], i["status_code"]) for i in items] == [
        ("failed", 500),
        ("failed", 500),
        ("succeeded", 204),
    ]
    assert {i["url_host"] for i in items} == {"localhost"}
    assert items[0]["next_retry_at"] is not None
    assert {i["event_id"] for i in items} == {headers["webhook-id"]}


def test_webhook_is_retried_and_delivered_on_postgresql(
    make_stack: StackFactory,
    sample: Callable[[str], Path],
    receiver: Receiver,
    postgres_url: str,
) -> None:
    receiver.fail_first = 1
    stack = make_stack(database_url=postgres_url, **FAST_RETRIES)
    stack.start_notifier()
    upload_id = stack.upload(sample("short_clip"), "talk.mp4", "video/mp4")
    job = stack.create_job(upload_id, notify={"webhook_url": receiver.url})
    wait_for(lambda: receiver.succeeded() == 1, 90, "the webhook to be delivered")
    Webhook(_secret(stack)).verify(receiver.requests[-1][1], receiver.requests[-1][0])
    wait_for(
        lambda: [i["status"] for i in _deliveries(stack, job["id"])] == ["failed", "succeeded"],
        30,
        "both attempts to be recorded",
    )


def test_webhook_retried_by_hand_is_sent_again_with_the_same_webhook_id(
    make_stack: StackFactory, sample: Callable[[str], Path], receiver: Receiver
) -> None:
    stack = make_stack(**FAST_RETRIES)
    stack.start_notifier()
    upload_id = stack.upload(sample("short_clip"), "talk.mp4", "video/mp4")
    job = stack.create_job(upload_id, notify={"webhook_url": receiver.url})
    wait_for(lambda: receiver.succeeded() == 1, 90, "the webhook to be delivered")
    first = _deliveries(stack, job["id"])[0]

    with stack.client() as api:
        response = api.post(f"/v1/jobs/{job['id']}/deliveries/{first['id']}/retry")
    assert response.status_code == 202, response.text

    wait_for(lambda: receiver.succeeded() == 2, 30, "the retry to be delivered")
    assert receiver.requests[0][0]["webhook-id"] == receiver.requests[1][0]["webhook-id"]


def test_notifier_killed_mid_delivery_still_delivers_with_the_same_webhook_id(
    make_stack: StackFactory, sample: Callable[[str], Path], receiver: Receiver
) -> None:
    # Given a receiver that holds the first request open
    receiver.hold_first = True
    stack = make_stack(notify_claim_timeout_s="2", **FAST_RETRIES)
    notifier = stack.start_notifier()
    upload_id = stack.upload(sample("short_clip"), "talk.mp4", "video/mp4")
    job = stack.create_job(upload_id, notify={"webhook_url": receiver.url})
    wait_for(lambda: len(receiver.requests) == 1, 90, "the first delivery to arrive")
    # When the notifier is SIGKILLed while that delivery is in flight
    notifier.stop(signal.SIGKILL)
    receiver.release.set()
    # Then a new notifier delivers the event, with the same webhook-id
    stack.start_notifier()
    wait_for(lambda: receiver.succeeded() == 1, 60, "the delivery after the crash")
    assert receiver.requests[0][0]["webhook-id"] == receiver.requests[1][0]["webhook-id"]
    Webhook(_secret(stack)).verify(receiver.requests[1][1], receiver.requests[1][0])
    wait_for(
        lambda: [i["status"] for i in _deliveries(stack, job["id"])] == ["succeeded"],
        30,
        "the delivery to be recorded",
    )


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(message_from_bytes(content))
        return "250 OK"


def test_email_is_sent_when_the_account_asks_for_it(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given an SMTP server and an account that wants email by default
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        stack = make_stack(
            smtp_url=f"smtp://127.0.0.1:{port}?starttls=false",
            public_url="https://v2m.example",
            **FAST_RETRIES,
        )
        stack.start_notifier()
        with stack.client() as api:
            assert api.patch("/v1/account", json={"notify_email": True}).status_code == 200
            email = api.get("/v1/account").json()["email"]
        # When a job created without `notify` completes
        job = stack.convert(sample("short_clip"), "holiday.mp4", "video/mp4")
        # Then the account's address receives a message naming the file, linking the job
        wait_for(lambda: len(inbox.messages) == 1, 60, "the email to arrive")
        msg = inbox.messages[0]
        assert msg["To"] == email
        assert "holiday.mp4" in msg["Subject"]
        assert f"https://v2m.example/#job={job['id']}" in msg.as_string()
        wait_for(
            lambda: [i["channel"] for i in _deliveries(stack, job["id"])] == ["email"],
            30,
            "the email delivery to be recorded",
        )
    finally:
        controller.stop()


def test_local_mail_sink_writes_each_message_to_an_eml_file(tmp_path: Path) -> None:
    # Given the SMTP sink `make run` starts
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "scripts/mail_sink.py", "--port", str(port), "--dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: port_open(port), 30, "the mail sink to listen")
        # When a message is sent to it
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
        # Then it lands in the directory as <timestamp>-<id>.eml
        wait_for(lambda: len(list(tmp_path.glob("*-*.eml"))) == 1, 10, "the .eml file")
        (eml,) = tmp_path.glob("*.eml")
        assert b"Subject: hi" in eml.read_bytes()
    finally:
        sink.terminate()
        out, _ = sink.communicate(timeout=10)
    assert str(tmp_path) in out
