"""The page in Chromium when MP3s expire: "Expired" in place of the player, how long a
download lasts on the rows still kept, and a player whose MP3 vanished turning into
"Expired" when played."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import PageLog
from tests.integration import media
from tests.integration.conftest import StackFactory

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.integration

OpenPage = Callable[[str], tuple["Page", PageLog]]


def test_the_page_shows_expired_instead_of_a_player(
    make_stack: StackFactory, open_page: OpenPage, media_dir: Path
) -> None:
    # Given three converted files on a server that needs no sign-in
    stack = make_stack(workers=1, auth_required="false")
    source = media.make(media.SAMPLES["mp4_h264_aac"], media_dir)
    kept, expired, vanishing = (
        stack.convert(source, name, "video/mp4") for name in ("kept.mp4", "old.mp4", "lost.mp4")
    )
    assert {j["status"] for j in (kept, expired, vanishing)} == {"completed"}
    # and two MP3s deleted from storage: one the API has already found gone
    s3 = stack.s3()
    for job in (expired, vanishing):
        s3.delete_object(Bucket=stack.bucket, Key=stack.output_key(job["id"]))
    with stack.client() as api:
        assert api.get(f"/v1/jobs/{expired['id']}/download").status_code == 410

    # When the page lists them
    page, _log = open_page(stack.api_url + "/")
    row = {
        j["id"]: page.locator(f'li[data-job-id="{j["id"]}"]') for j in (kept, expired, vanishing)
    }
    row[kept["id"]].locator("audio").wait_for()

    # Then the expired one says so, with no player and no download button
    gone = row[expired["id"]]
    assert gone.get_attribute("data-output") == "expired"
    assert gone.locator('[data-role="badge"]').text_content() == "Expired"
    assert "Expired: old.mp3 is no longer kept" in (
        gone.locator('[data-role="expired"]').text_content() or ""
    )
    assert gone.locator("audio").count() == 0
    assert gone.locator('[data-role="download"]').count() == 0
    # and the one still kept plays, saying until when it is kept
    assert "kept until" in (row[kept["id"]].locator('[data-role="status"]').text_content() or "")
    assert row[kept["id"]].get_attribute("data-output") is None

    # When the MP3 the page did not yet know was gone is played
    row[vanishing["id"]].locator("audio").evaluate("audio => audio.play().catch(() => {})")

    # Then its row turns to "Expired" too
    page.wait_for_selector(f'li[data-job-id="{vanishing["id"]}"][data-output="expired"]')
    assert row[vanishing["id"]].locator("audio").count() == 0
