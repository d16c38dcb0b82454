"""The page's notification settings: webhook URL, email switch, signing secret."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import PageLog
from tests.integration.conftest import StackFactory

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
    page.get_by_label("Email me when a conversion finishes").check()
    page.click('[data-role="notify-save"]')
    expect(status).to_have_text("Saved.")
    page.reload()
    expect(page.get_by_label("Webhook URL")).to_have_value(HOOK)
    expect(page.get_by_label("Email me when a conversion finishes")).to_be_checked()
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
