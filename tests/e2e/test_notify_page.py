"""The page's notification settings: webhook URL, email switch, signing secret."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import PageLog
from tests.integration import media
from tests.integration.conftest import StackFactory, free_port, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page

pytestmark = pytest.mark.integration

OpenPage = Callable[[str], tuple["Page", PageLog]]
HOOK = "https://93.184.216.34/hooks/video2mp3"


def test_notification_settings_are_saved_and_the_secret_revealed_and_rotated(
    make_stack: StackFactory, open_page: OpenPage
) -> None:
    from playwright.sync_api import expect

    stack = make_stack(workers=0, auth_required="false")
    page, _log = open_page(stack.api_url + "/")
    page.wait_for_selector('[data-role="empty"]:not([hidden])')
    status = page.locator('[data-role="notify-status"]')

    # A webhook on a private address is refused with the API's sentence
    page.get_by_label("Webhook URL").fill("http://10.0.0.1/hook")
    page.click('[data-role="notify-save"]')
    expect(status).to_contain_text("public addresses")

    # A public one, with email, is saved and still there after a reload
    page.get_by_label("Webhook URL").fill(HOOK)
    page.get_by_label("Mail me when a conversion finishes").check()
    page.click('[data-role="notify-save"]')
    expect(status).to_have_text("Saved.")
    page.reload()
    expect(page.get_by_label("Webhook URL")).to_have_value(HOOK)
    expect(page.get_by_label("Mail me when a conversion finishes")).to_be_checked()
    with stack.client() as api:
        account = api.get("/v1/account").json()
    assert (account["webhook_url"], account["notify_email"]) == (HOOK, True)

    # The secret stays hidden until revealed, then is the API's
    secret = page.locator('[data-role="notify-secret"]')
    expect(secret).to_have_text("hidden")
    page.click('[data-role="notify-reveal"]')
    expect(secret).to_contain_text("whsec_")
    with stack.client() as api:
        assert secret.text_content() == api.get("/v1/account/webhook-secret").json()["secret"]

    # Rotating (after a confirmation) shows the new one
    before = secret.text_content()

    def accept(dialog: Dialog) -> None:
        dialog.accept()

    page.once("dialog", accept)
    page.click('[data-role="notify-rotate"]')
    expect(secret).not_to_have_text(before or "")
    with stack.client() as api:
        assert secret.text_content() == api.get("/v1/account/webhook-secret").json()["secret"]


def test_finished_job_row_shows_its_webhook_delivered(
    make_stack: StackFactory,
    open_page: OpenPage,
    media_dir: Path,
) -> None:
    from playwright.sync_api import expect

    # Given a receiver on this machine and a stack whose notifier may reach it
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack = make_stack(
            auth_required="false",
            webhook_allow_private_targets="true",
            notify_poll_interval_s="0.2",
        )
        stack.start_notifier()
        page, _log = open_page(stack.api_url + "/")
        page.wait_for_selector('[data-role="empty"]:not([hidden])')
        # When a job asking for a webhook is converted while the page shows the list
        upload_id = stack.upload(
            media.make(media.SAMPLES["short_clip"], media_dir), "talk.mp4", "video/mp4"
        )
        url = f"http://127.0.0.1:{server.server_port}/hook"
        job = stack.create_job(upload_id, notify={"webhook_url": url})
        stack.wait_finished(job["id"])

        def delivered() -> bool:
            with stack.client() as api:
                items = api.get(f"/v1/jobs/{job['id']}/deliveries").json()["items"]
            return [i["status"] for i in items] == ["succeeded"]

        wait_for(delivered, 30, "the webhook to be delivered")
        page.reload()
        # Then its row says the webhook was delivered
        row = page.locator(f'li[data-job-id="{job["id"]}"]')
        expect(row.locator('[data-role="delivery"]')).to_have_text(
            "Webhook delivered", timeout=30_000
        )
        assert len(received) == 1
    finally:
        server.shutdown()
        server.server_close()
