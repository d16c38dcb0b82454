"""The page's output options in Chromium against the real stack, and its accessibility as
axe-core (from npm, injected into the page) judges it: the sign-in form and the signed-in
page with a finished conversion, with no violation allowed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import DEV_EMAIL, PageLog, sign_in
from tests.integration import media
from tests.integration.conftest import ROOT, StackFactory

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Page

pytestmark = pytest.mark.integration

OpenPage = Callable[[str], tuple["Page", PageLog]]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    nodes: v.nodes.map((n) => n.target.join(" ")),
  }));
}"""


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now. The script is evaluated through
    the DevTools protocol, which the page's Content-Security-Policy does not govern."""
    if not AXE.exists():
        pytest.fail("axe-core is not installed: run `make install-test-tools` (npm ci).")
    page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE)
    return found


def test_output_options_reach_the_job_and_the_page_passes_axe(
    make_stack: StackFactory, media_dir: Path, open_page: OpenPage
) -> None:
    stack = make_stack(events_poll_interval_s="0.2")
    clip = media.make(media.SAMPLES["mp4_h264_aac"], media_dir)
    page, _log = open_page(stack.api_url + "/")

    # The sign-in form has no accessibility violation
    page.wait_for_selector('[data-role="signin"]:not([hidden])')
    assert axe_violations(page) == []

    # When the user signs in and picks FLAC: the bitrate and VBR settings do not apply
    sign_in(page, DEV_EMAIL, stack.env["V2M_DEV_PASSWORD"])
    page.wait_for_selector('[data-role="empty"]:not([hidden])')
    page.get_by_label("Format").select_option("flac")
    assert page.get_by_label("Quality").is_disabled()

    # and then M4A, loudness for streaming, a trim and a title, and chooses a video
    page.get_by_label("Format").select_option("m4a")
    assert page.get_by_label("Quality").is_enabled()
    page.get_by_label("Even out the loudness").check()
    page.get_by_label("Target").select_option("-14")
    page.get_by_label("End, in seconds").fill("2")
    page.get_by_label("Title").fill("My clip")
    video: FilePayload = {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": clip.read_bytes()}
    page.set_input_files("#file-input", files=[video])
    page.wait_for_selector('li[data-status="completed"]', timeout=60_000)

    # Then the job carries those options, and the download is the M4A
    job_id = page.locator("li[data-job-id]").first.get_attribute("data-job-id")
    with stack.client() as api:
        job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["options"]["format"] == "m4a"
    assert job["options"]["normalize"]["target_lufs"] == -14
    assert job["options"]["trim"]["end_s"] == 2
    assert job["options"]["tags"]["title"] == "My clip"
    assert job["output"]["duration_s"] == pytest.approx(2.0, abs=0.1)
    link = page.get_by_role("link", name="Download M4A clip.m4a")
    assert link.get_attribute("download") == "clip.m4a"

    # and the signed-in page, finished row included, has no accessibility violation
    assert axe_violations(page) == []


def test_a_backwards_trim_is_refused_on_the_page_and_fits_360_px(
    make_stack: StackFactory, open_page: OpenPage
) -> None:
    stack = make_stack()
    page, log = open_page(stack.api_url + "/")
    page.set_viewport_size({"width": 360, "height": 800})
    sign_in(page, DEV_EMAIL, stack.env["V2M_DEV_PASSWORD"])
    page.wait_for_selector('[data-role="empty"]:not([hidden])')

    page.get_by_label("Start, in seconds").fill("10")
    page.get_by_label("End, in seconds").fill("5")
    junk: FilePayload = {"name": "a.mp4", "mimeType": "video/mp4", "buffer": b"x" * 10}
    page.set_input_files("#file-input", files=[junk])

    error = page.locator('[data-role="trim-error"]')
    assert error.text_content() == "The end of the trim must come after its start."
    assert page.evaluate("document.activeElement.id") == "opt-trim-end"
    assert page.locator("li[data-job-id]").count() == 0
    assert not log.urls("/v1/uploads")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_check_before_converting_prefills_the_files_tags_and_shows_its_cover(
    make_stack: StackFactory, media_dir: Path, open_page: OpenPage
) -> None:
    stack = make_stack(events_poll_interval_s="0.2")
    song = media.make(media.SAMPLES["mp3_tagged_cover"], media_dir)
    page, _log = open_page(stack.api_url + "/")
    page.set_viewport_size({"width": 360, "height": 800})
    sign_in(page, DEV_EMAIL, stack.env["V2M_DEV_PASSWORD"])
    page.wait_for_selector('[data-role="empty"]:not([hidden])')

    # When the user asks to check the tags and uploads an MP3 with tags and a cover
    page.get_by_label("Check the tags before converting").check()
    payload: FilePayload = {
        "name": "tagged.mp3",
        "mimeType": "audio/mpeg",
        "buffer": song.read_bytes(),
    }
    page.set_input_files("#file-input", files=[payload])
    page.wait_for_selector('li[data-status="review"] [data-role="review"]', timeout=30_000)
    row = page.locator('li[data-status="review"]')

    # Then the file's own tags fill the fields, its cover and its length are shown
    review = row.get_by_role("form", name="Before converting tagged.mp3")
    for label, key in [("Title", "title"), ("Artist", "artist"), ("Album", "album"),
                       ("Album artist", "album_artist"), ("Date", "date"), ("Track", "track"),
                       ("Genre", "genre"), ("Comment", "comment")]:  # fmt: skip
        assert review.get_by_label(label, exact=True).input_value() == media.SOURCE_TAGS[key]
    cover = review.get_by_role("img", name="Cover picture of tagged.mp3")
    assert cover.evaluate("img => img.complete && img.naturalWidth") == 64
    assert "Length 3.0 s" in (review.locator('[data-role="review-facts"]').text_content() or "")
    assert review.get_by_label("Start, in seconds").get_attribute("max") is not None

    # and the open check passes axe and fits 360 px
    assert axe_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # A start past the end is refused in the form, before any job
    review.get_by_label("Start, in seconds").fill("5")
    review.get_by_role("button", name="Convert").click()
    error = review.locator('[data-role="review-error"]')
    assert "before the end of the file" in (error.text_content() or "")
    assert row.get_attribute("data-job-id") == ""

    # When the user edits the title and converts
    review.get_by_label("Start, in seconds").fill("")
    review.get_by_label("Title", exact=True).fill("Edited title")
    review.get_by_role("button", name="Convert").click()
    page.wait_for_selector('li[data-status="completed"]', timeout=60_000)

    # Then only the change is sent: the file's other tags and cover are the server's default
    job_id = page.locator("li[data-job-id]").first.get_attribute("data-job-id")
    with stack.client() as api:
        job = api.get(f"/v1/jobs/{job_id}").json()
    sent = {k: v for k, v in job["options"]["tags"].items() if v is not None}
    assert sent == {"title": "Edited title"}
    assert job["options"]["cover"] == "source"
    assert job["status"] == "completed"
