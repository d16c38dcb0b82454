"""A large file in Chromium: uploaded in parts, interrupted, resumed after a reload."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.conftest import PageLog
from tests.integration import media
from tests.integration.conftest import StackFactory

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Route

pytestmark = pytest.mark.integration

OpenPage = Callable[[str], tuple["Page", PageLog]]
PART = 5 * 1024 * 1024


def part_number(request: Request) -> int | None:
    query = parse_qs(urlsplit(request.url).query)
    if request.method != "PUT" or "partNumber" not in query:
        return None
    return int(query["partNumber"][0])


def is_part_two(url: str) -> bool:
    return "partNumber=2&" in url or url.endswith("partNumber=2")


def test_page_resumes_a_multipart_upload_after_a_reload(
    make_stack: StackFactory, media_dir: Path, open_page: OpenPage, tmp_path: Path
) -> None:
    # Given a server that takes files of 5 MiB and more in 5 MiB parts, and a 12 MB video
    stack = make_stack(
        auth_required="false",
        multipart_threshold_bytes=str(PART),
        multipart_part_size_bytes=str(PART),
    )
    video = media.make(media.SAMPLES["mp4_12mb"], media_dir)
    name = video.name
    page, log = open_page(stack.api_url + "/")
    page.wait_for_selector('[data-role="empty"]:not([hidden])')

    # When the connection drops on every try of part 2
    aborted: list[int] = []

    def drop_part_two(route: Route) -> None:
        aborted.append(2)
        route.abort("connectionreset")

    page.route(is_part_two, drop_part_two)
    page.set_input_files("#file-input", files=[str(video)])
    saved = page.wait_for_function(
        "() => localStorage.getItem('v2m.multipartUploads')"
    ).json_value()
    (entry,) = json.loads(saved).values()
    upload_id = entry["upload_id"]
    assert entry["multipart"] == {"part_size": PART, "part_count": 3}

    def stored() -> list[int]:
        with stack.client() as api:
            parts = api.get(f"/v1/uploads/{upload_id}/parts").json()["parts"]
        return [p["part_number"] for p in parts]

    # (Playwright runs the route handler only inside its own calls: wait in the page.)
    for _ in range(300):
        if aborted and stored() == [1, 3]:
            break
        page.wait_for_timeout(100)
    assert aborted and stored() == [1, 3], (aborted, stored())

    # And the user reloads the page and drops the same file again
    page.unroute(is_part_two)
    page.reload()
    page.wait_for_selector('[data-role="empty"]:not([hidden]), li[data-job-id]')
    sent_before = len(log.requests)
    page.set_input_files("#file-input", files=[str(video)])

    # Then only part 2 is sent, the upload completes and the video converts
    page.wait_for_function(
        """(name) => [...document.querySelectorAll("li[data-job-id]")].some(
          (r) => r.querySelector(".job__name").textContent === name
            && r.dataset.status === "completed")""",
        arg=name,
        timeout=60_000,
    )
    resent = [part_number(r) for r in log.requests[sent_before:] if part_number(r)]
    assert resent == [2], resent
    progress = page.evaluate("window.__uploadProgress")[name]
    # Progress started from the two parts storage held (part 1 and the short part 3)
    assert [v for v in progress if v > 0][0] >= 50 and max(progress) == 100, progress
    assert page.evaluate("localStorage.getItem('v2m.multipartUploads')") in (None, "{}")
    with stack.client() as api:
        (job,) = api.get("/v1/jobs").json()["items"]
    assert job["status"] == "completed" and job["input"]["size_bytes"] == video.stat().st_size
    stack.download(job["id"], tmp_path / "out.mp3")
    assert abs(media.audio_duration(tmp_path / "out.mp3") - media.audio_duration(video)) <= 0.15
