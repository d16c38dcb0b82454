"""The page, used as a person uses it, in Chromium against the real stack.

Covered: choosing files and dropping one; options reaching the job; upload progress;
live status over Server-Sent Events; the <audio> preview; the download being an MP3
named after the video; a failed job's message and retry (by keyboard), with polling when
the event stream is refused; refusals by the API (413) and by the page before any request
(over the learned limit, not media); the list surviving a reload; no horizontal scrolling
at 360 px. Two screenshots for docs/screenshots/ are taken on the way.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import PageLog, save_screenshot
from tests.integration import media
from tests.integration.conftest import StackFactory

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Locator, Page

pytestmark = pytest.mark.integration

OpenPage = Callable[[str], tuple["Page", PageLog]]

# Long enough to watch converting at the capped read rate, small enough to upload fast.
_LOW_VIDEO = ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=5"]


def _tone(freq: int) -> list[str]:
    return [
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={freq}:sample_rate=44100,aformat=channel_layouts=stereo",
    ]


HOLIDAY = media.Sample(
    "e2e_holiday",
    "holiday.mp4",
    "video/mp4",
    [*_LOW_VIDEO, *_tone(440), "-t", "40", "-c:v", "libx264", "-preset", "ultrafast",
     "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart"],
)  # fmt: skip
INTERVIEW = media.Sample(
    "e2e_interview",
    "interview.mkv",
    "video/x-matroska",
    [*_LOW_VIDEO, *_tone(330), "-t", "30", "-c:v", "libx264", "-preset", "ultrafast",
     "-c:a", "libopus", "-b:a", "64k"],
)  # fmt: skip

SMALL_LIMIT = 200_000  # V2M_MAX_UPLOAD_BYTES of the failure test: "too big" costs 250 kB
UPLOAD_BYTES_PER_S = 1_500_000  # Chromium's upload throttle, so progress has steps

ROWS = """() => [...document.querySelectorAll("li[data-job-id]")].map((row) => ({
  name: row.querySelector(".job__name").textContent,
  id: row.dataset.jobId,
  status: row.dataset.status,
  error: row.dataset.errorCode || null,
  message: row.querySelector('[data-role="error"]').hidden
    ? null : row.querySelector('[data-role="error"]').textContent,
}))"""


def rows(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate(ROWS)
    return found


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f'li[data-job-id="{job_id}"]')


def file_payload(path: Path, name: str, mime: str) -> FilePayload:
    return {"name": name, "mimeType": mime, "buffer": path.read_bytes()}


def drop_file(page: Page, name: str, mime: str, data: bytes) -> None:
    """Drag a file onto the drop zone, as the OS would (DataTransfer with a File)."""
    page.evaluate(
        """({ name, mime, b64 }) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type: mime }));
          const zone = document.querySelector('[data-role="dropzone"]');
          for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
          }
        }""",
        {"name": name, "mime": mime, "b64": base64.b64encode(data).decode()},
    )


def wait_mid_conversion(page: Page) -> None:
    """Until every row converts (for the screenshot); at worst until one does."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    progress = """(row) => row.dataset.status === "processing"
      && Number(row.querySelector('[data-role="convert-progress"]').value) >= 8"""
    try:
        page.wait_for_function(
            f"""() => {{
              const rows = [...document.querySelectorAll("li[data-job-id]")];
              const percent = (row) => Number(row.querySelector('[data-role="convert-progress"]').value);
              return rows.length === 2 && rows.every({progress}) && rows.some((r) => percent(r) >= 30);
            }}""",
            timeout=15_000,
        )
    except PlaywrightTimeoutError:
        page.wait_for_function(
            f"""() => [...document.querySelectorAll("li[data-job-id]")].some({progress})""",
            timeout=15_000,
        )


def test_two_videos_upload_convert_play_and_download(
    make_stack: StackFactory,
    slow_ffmpeg: Callable[[float], str],
    media_dir: Path,
    open_page: OpenPage,
    tmp_path: Path,
) -> None:
    # Given a stack converting two jobs at once, ffmpeg capped at 10x real time so the
    # conversions last long enough to be seen, and a page with nothing converted yet
    stack = make_stack(
        auth_required="false",  # until the page logs in (issue 9)
        worker_concurrency="2",
        ffmpeg_bin=slow_ffmpeg(10),
        progress_interval_s="0.2",
        events_poll_interval_s="0.2",
    )
    holiday, interview = media.make(HOLIDAY, media_dir), media.make(INTERVIEW, media_dir)
    page, log = open_page(stack.api_url + "/")
    page.wait_for_selector('[data-role="empty"]:not([hidden])')
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    throttle = {"offline": False, "latency": 0, "downloadThroughput": -1}
    cdp.send(
        "Network.emulateNetworkConditions", {**throttle, "uploadThroughput": UPLOAD_BYTES_PER_S}
    )

    # When the user picks 128 kbit/s CBR, mono, and chooses both videos
    page.get_by_label("Quality").select_option("b:128")
    page.get_by_label("Mono").check()
    page.set_input_files(
        "#file-input",
        files=[
            file_payload(holiday, "holiday.mp4", "video/mp4"),
            file_payload(interview, "interview.mkv", "video/x-matroska"),
        ],
    )

    # Then each gets a row that uploads, converts live and is photographed mid-way
    wait_mid_conversion(page)
    save_screenshot(page, "page-converting.png")
    page.wait_for_function(
        """() => {
          const rows = [...document.querySelectorAll("li[data-job-id]")];
          return rows.length === 2 && rows.every((r) => r.dataset.status === "completed");
        }""",
        timeout=40_000,
    )
    by_name = {r["name"]: r for r in rows(page)}
    assert list(by_name) == ["holiday.mp4", "interview.mkv"], by_name  # first chosen on top
    progress = page.evaluate("window.__uploadProgress")
    statuses = page.evaluate("window.__statuses")
    for name in by_name:
        values = progress.get(name, [])
        assert values and max(values) == 100, f"{name}: upload progress {values}"
        assert any(0 < v < 100 for v in values), f"{name}: no progress between 0 and 100: {values}"
        seen = statuses.get(name, [])
        assert seen[-1] == "completed" and "uploading" in seen and "processing" in seen, seen
        assert seen.index("uploading") < seen.index("processing"), seen

    for name, seconds in (("holiday", 40), ("interview", 30)):
        job_id = next(r["id"] for r in by_name.values() if r["name"].startswith(name))
        job = stack.get_job(job_id)
        assert job["status"] == "completed"
        assert job["options"]["bitrate_kbps"] == 128 and job["options"]["channels"] == 1
        # The preview plays the MP3: its duration is known once metadata loads
        duration = page.wait_for_function(
            """(id) => {
              const audio = document.querySelector(`li[data-job-id="${id}"] audio`);
              return audio && audio.duration > 0 && audio.duration;
            }""",
            arg=job_id,
        ).json_value()
        assert abs(float(duration) - seconds) < 1.0, duration
        # The download link saves an MP3 named after the video
        link = row(page, job_id).locator('a[download][data-role="download"]')
        assert link.get_attribute("download") == f"{name}.mp3"
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.suggested_filename == f"{name}.mp3"
        saved = tmp_path / f"{name}.mp3"
        download.save_as(saved)
        assert saved.read_bytes()[:3] == b"ID3" or saved.read_bytes()[0] == 0xFF
        probed: Any = media.probe(saved)
        audio = next(s for s in probed["streams"] if s["codec_type"] == "audio")
        assert (audio["codec_name"], audio["channels"]) == ("mp3", 1), probed
        assert abs(float(probed["format"]["duration"]) - seconds) < 0.3, probed

    # And live status came over Server-Sent Events; each job was created once, with a key
    for r in by_name.values():
        assert log.urls(f"/v1/jobs/{r['id']}/events"), log.console
    creates = [r for r in log.requests if r.method == "POST" and r.url.endswith("/v1/jobs")]
    keys = {r.headers.get("idempotency-key") for r in creates}
    assert len(creates) == 2 and len(keys) == 2 and None not in keys

    page.mouse.move(0, 0)  # no hover effect in the picture
    page.wait_for_timeout(300)  # let the players draw their durations
    save_screenshot(page, "page-done.png")

    # And the page is readable at 360 px without scrolling sideways
    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    # When the page is reloaded, the list comes back from GET /v1/jobs
    page.set_viewport_size({"width": 1100, "height": 900})
    page.reload()
    page.wait_for_function(
        "() => document.querySelectorAll('li[data-status=\"completed\"]').length === 2"
    )
    assert {r["id"] for r in rows(page)} == {r["id"] for r in by_name.values()}


def test_failure_retry_and_refusals(
    make_stack: StackFactory, media_dir: Path, open_page: OpenPage
) -> None:
    # Given a stack that accepts uploads up to 200 000 bytes, so that a file the page must
    # refuse as too big is cheap to make (the page learns the limit from its first upload)
    stack = make_stack(
        auth_required="false",  # until the page logs in (issue 9)
        max_upload_bytes=str(SMALL_LIMIT),
        events_poll_interval_s="0.2",
    )
    silent = media.make(media.SAMPLES["no_audio"], media_dir)
    assert silent.stat().st_size < SMALL_LIMIT
    page, log = open_page(stack.api_url + "/")
    page.wait_for_selector('[data-role="empty"]:not([hidden])')

    # The file picker is reachable from the keyboard, and the options are labelled
    for _ in range(4):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file-input":
            break
    assert page.evaluate("document.activeElement.id") == "file-input"
    assert page.get_by_label("Sample rate").count() == 1

    # When, before the page knows the limit, a file over it is chosen, the API refuses it
    # (413) and the row says so in the API's words, offering Dismiss rather than Retry
    early: FilePayload = {
        "name": "early.mp4",
        "mimeType": "video/mp4",
        "buffer": b"\0" * (SMALL_LIMIT + 1),
    }
    page.set_input_files("#file-input", files=[early])
    refused_by_api = page.wait_for_selector('li[data-error-code="upload_too_large"]')
    assert refused_by_api is not None
    assert "the largest accepted is 195.3 KiB" in (refused_by_api.text_content() or "")
    page.click('li[data-error-code="upload_too_large"] [data-role="dismiss"]')

    # When a video without sound is dropped on the page
    drop_file(page, "silent-film.mp4", "video/mp4", silent.read_bytes())

    # Then its row fails with the worker's message, in words, and offers a retry
    failed = page.wait_for_selector('li[data-status="failed"]:not([data-job-id=""])')
    assert failed is not None
    first_id = failed.get_attribute("data-job-id")
    assert first_id
    error = stack.get_job(first_id)["error"]
    assert error["code"] == "no_audio_stream"
    assert rows(page)[0]["message"] == error["message"]
    assert rows(page)[0]["error"] == "no_audio_stream"
    # And the page has learned the server's limit from the upload response
    assert page.text_content('[data-role="max-size"]') == "195.3 KiB"

    # When the event stream is refused (as by a buffering proxy) and Retry is pressed with
    # the keyboard, the file starts again as a new job, followed by polling instead
    page.route("**/v1/jobs/*/events", lambda route: route.abort())
    retry = row(page, first_id).locator('[data-role="retry"]')
    retry.focus()
    page.keyboard.press("Enter")
    again = page.wait_for_function(
        """(first) => {
          const row = document.querySelector("li[data-job-id]");
          return row.dataset.status === "failed" && row.dataset.jobId
            && row.dataset.jobId !== first && row.dataset.jobId;
        }""",
        arg=first_id,
    ).json_value()
    assert stack.get_job(str(again))["error"]["code"] == "no_audio_stream"
    polls = [u for u in log.urls(f"/v1/jobs/{again}", "GET") if u.endswith(str(again))]
    assert log.urls(f"/v1/jobs/{again}/events") and polls
    page.unroute("**/v1/jobs/*/events")

    # When the page is reloaded, both failed jobs are listed with their message
    page.reload()
    page.wait_for_function(
        "() => document.querySelectorAll('li[data-status=\"failed\"]').length === 2"
    )
    listed = rows(page)
    assert [r["id"] for r in listed] == [again, first_id]
    assert all(r["message"] == error["message"] for r in listed)
    assert page.locator('[data-role="retry"]').count() == 2

    # When a file over the limit and a text file are chosen
    sent_before = len(log.requests)
    too_big: FilePayload = {
        "name": "concert.mp4",
        "mimeType": "video/mp4",
        "buffer": b"\0" * (SMALL_LIMIT + 50_000),
    }
    text: FilePayload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a video\n"}
    page.set_input_files("#file-input", files=[too_big, text])

    # Then both are refused with a clear message, and nothing is sent anywhere
    page.wait_for_selector('li[data-error-code="file_too_large"]')
    page.wait_for_selector('li[data-error-code="not_media"]')
    page.wait_for_timeout(500)
    refused = {r["name"]: r for r in rows(page) if r["error"] in ("file_too_large", "not_media")}
    assert refused["concert.mp4"]["message"] == (
        "This file is 244.1 KiB; the largest accepted is 195.3 KiB."
    )
    assert "not a video or audio file" in refused["notes.txt"]["message"]
    assert all(r["status"] == "failed" and r["id"] == "" for r in refused.values())
    sent = [f"{r.method} {r.url}" for r in log.requests[sent_before:]]
    assert not [s for s in sent if "/v1/uploads" in s or s.startswith("PUT ")], sent

    # And a refused row can be dismissed
    page.locator('li[data-error-code="not_media"] [data-role="dismiss"]').click()
    page.wait_for_selector('li[data-error-code="not_media"]', state="detached")
