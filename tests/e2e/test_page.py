"""The page, used as a person uses it, in Chromium against the real stack.

Covered: signing in (a wrong password shows the API's message and sends nothing; the
right one from the keyboard), the access token on every API call and in the URLs of the
event stream and the MP3 (never on the PUT to storage), its renewal while the page works
and after a 401, a session that ends (the page waits for the sign-in and carries on),
signing out (and staying out after a reload), another user seeing none of these jobs, a
server that needs no sign-in; the page's Content-Security-Policy (served, enforced, never
violated); choosing files and dropping one; options reaching the job; upload progress;
live status over Server-Sent Events; the <audio> preview; the download being an MP3
named after the video; a failed job's message and retry (by keyboard), with polling when
the event stream is refused; a 429 waited out; refusals by the API (413) and by the page
before any request (over the learned limit, not media); the list surviving a reload; no
horizontal scrolling at 360 px. Two screenshots for docs/screenshots/ are taken on the way.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.conftest import DEV_EMAIL, PageLog, save_screenshot, sign_in
from tests.integration import media
from tests.integration.conftest import ROOT, Stack, StackFactory

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Locator, Page, Route

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

TOKEN_TTL_S = 8  # access token lifetime of the main test: renewed several times in a run
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


def is_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("v2m_")


def check_credentials(log: PageLog, stack: Stack) -> None:
    """Every API call carried `Authorization: Bearer <access JWT>`; the event stream and the
    MP3 carried the JWT as ?access_token=; storage never saw a credential of the API; the
    API key appears nowhere."""
    counts = {"header": 0, "query": 0, "storage PUT": 0}
    for request in log.requests:
        auth = request.all_headers().get("authorization", "")
        what = f"{request.method} {request.url}: {auth!r}"
        assert stack.api_key not in request.url + auth, what
        parts = urlsplit(request.url)
        api = request.url.startswith(stack.api_url + "/v1/")
        if api and parts.path in ("/v1/auth/login", "/v1/auth/refresh"):
            assert not auth, what
        elif api and parts.path == "/v1/auth/me" and not auth:
            response = request.response()  # "who is there?" without a session: refused
            assert response is not None and response.status == 401, what
        elif api and parts.path.endswith(("/events", "/download")):
            assert not auth, what
            (token,) = parse_qs(parts.query)["access_token"]
            assert is_jwt(token), what
            counts["query"] += 1
        elif api:
            assert auth.startswith("Bearer ") and is_jwt(auth.removeprefix("Bearer ")), what
            counts["header"] += 1
        else:  # the page's files, storage (PUT, and the MP3 behind the redirect)
            assert not auth and "access_token" not in request.url, what
            counts["storage PUT"] += request.method == "PUT"
    assert all(counts.values()), counts


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
    # conversions last long enough to be seen, access tokens that live 8 s (so that they
    # expire several times while the page works), and a page with nothing converted yet
    stack = make_stack(
        worker_concurrency="2",
        ffmpeg_bin=slow_ffmpeg(10),
        progress_interval_s="0.2",
        events_poll_interval_s="0.2",
        access_token_ttl_s=str(TOKEN_TTL_S),
    )
    holiday, interview = media.make(HOLIDAY, media_dir), media.make(INTERVIEW, media_dir)
    page, log = open_page(stack.api_url + "/")

    # The page asks who is there, and without a session shows only the sign-in form
    page.wait_for_selector('[data-role="signin"]:not([hidden])')
    assert page.locator('[data-role="app"]').is_hidden()
    assert "'unsafe-inline'" not in log.csp and "object-src 'none'" in log.csp, log.csp

    # When the local user signs in
    sign_in(page, DEV_EMAIL, stack.env["V2M_DEV_PASSWORD"])
    page.wait_for_selector('[data-role="empty"]:not([hidden])')
    assert page.text_content('[data-role="user-email"]') == DEV_EMAIL
    assert page.locator('[data-role="signin"]').is_hidden()
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
        href = row(page, r["id"]).locator('[data-role="download"]').get_attribute("href") or ""
        assert "access_token=" in href, href
    creates = [r for r in log.requests if r.method == "POST" and r.url.endswith("/v1/jobs")]
    keys = {r.headers.get("idempotency-key") for r in creates}
    assert len(creates) == 2 and len(keys) == 2 and None not in keys

    page.mouse.move(0, 0)  # no hover effect in the picture
    page.wait_for_timeout(300)  # let the players draw their durations
    save_screenshot(page, "page-done.png")

    # And the page is readable at 360 px without scrolling sideways
    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    # When the page is reloaded, the session is still there and the list comes back
    page.set_viewport_size({"width": 1100, "height": 900})
    page.reload()
    page.wait_for_function(
        "() => document.querySelectorAll('li[data-status=\"completed\"]').length === 2"
    )
    assert {r["id"] for r in rows(page)} == {r["id"] for r in by_name.values()}
    assert page.locator('[data-role="signin"]').is_hidden()

    # And every call was authenticated as it should be; the short-lived access token was
    # renewed before it expired, so that the API never had to refuse one
    check_credentials(log, stack)
    refreshes = log.urls("/v1/auth/refresh", "POST")
    assert refreshes, "the access token was never renewed"
    refused = [r.url for r in log.responses if r.status == 401]
    assert refused == [f"{stack.api_url}/v1/auth/me"], refused  # only "who is there?" at first


def test_failure_retry_and_refusals(
    make_stack: StackFactory, media_dir: Path, open_page: OpenPage
) -> None:
    # Given a stack that accepts uploads up to 200 000 bytes, so that a file the page must
    # refuse as too big is cheap to make (the page learns the limit from its first upload)
    stack = make_stack(max_upload_bytes=str(SMALL_LIMIT), events_poll_interval_s="0.2")
    silent = media.make(media.SAMPLES["no_audio"], media_dir)
    assert silent.stat().st_size < SMALL_LIMIT
    page, log = open_page(stack.api_url + "/")
    page.wait_for_selector('[data-role="signin"]:not([hidden])')
    signin_error = page.locator('[data-role="signin-error"]')
    assert signin_error.get_attribute("role") == "alert"

    # When the form is sent empty, it says what is missing without asking the API
    page.get_by_role("button", name="Sign in").click()
    assert signin_error.text_content() == "Enter your email address."
    assert page.evaluate("document.activeElement.id") == "signin-email"
    assert not log.urls("/v1/auth/login")

    # When a video is dropped and a wrong password is sent, the form shows the API's own
    # message, marks the fields, and nothing is uploaded
    drop_file(page, "silent-film.mp4", "video/mp4", silent.read_bytes())
    sign_in(page, DEV_EMAIL, "not-the-password")
    expected = httpx.post(
        f"{stack.api_url}/v1/auth/login", json={"email": DEV_EMAIL, "password": "wrong"}
    ).json()["error"]["message"]
    page.wait_for_function(
        "(text) => document.querySelector('[data-role=\"signin-error\"]').textContent === text",
        arg=expected,
    )
    assert page.get_by_label("Password").get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "signin-password"
    assert page.locator('[data-role="app"]').is_hidden()
    assert page.locator("li[data-job-id]").count() == 0
    sent = [f"{r.method} {r.url}" for r in log.requests]
    assert not [u for u in sent if "/v1/uploads" in u or "/v1/jobs" in u or u.startswith("PUT")]
    assert len(log.urls("/v1/auth/login", "POST")) == 1

    # When the right password is typed instead, the page opens with focus on its heading
    sign_in(page, DEV_EMAIL, stack.env["V2M_DEV_PASSWORD"])
    page.wait_for_selector('[data-role="empty"]:not([hidden])')
    assert page.text_content('[data-role="user-email"]') == DEV_EMAIL
    assert signin_error.text_content() == ""

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

    # When a video without sound is dropped on the page, and the API first answers that
    # the user has started too many uploads this minute
    limited = {"count": 0}

    def rate_limit_once(route: Route) -> None:
        if limited["count"]:
            route.fallback()
            return
        limited["count"] += 1
        body = {"error": {"code": "rate_limited", "message": "You can start 60 uploads a minute."}}
        route.fulfill(
            status=429,
            headers={"Retry-After": "1", "Content-Type": "application/json"},
            body=json.dumps(body),
        )

    page.route("**/v1/uploads", rate_limit_once)
    drop_file(page, "silent-film.mp4", "video/mp4", silent.read_bytes())

    # Then the row says why it waits, and goes on by itself after Retry-After
    page.wait_for_selector('[data-role="status"]:has-text("You can start 60 uploads a minute.")')
    page.unroute("**/v1/uploads")

    # And its row fails with the worker's message, in words, and offers a retry
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
    def is_event_stream(url: str) -> bool:
        return urlsplit(url).path.endswith("/events")  # its URL carries ?access_token=

    page.route(is_event_stream, lambda route: route.abort())
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
    page.unroute(is_event_stream)

    # When the page is reloaded and the API refuses the access token once (as when it has
    # just expired), the page renews it and lists both failed jobs with their message
    refresh_count = len(log.urls("/v1/auth/refresh", "POST"))
    expired = {"error": {"code": "unauthenticated", "message": "The token has expired."}}
    page.route(
        lambda url: urlsplit(url).path == "/v1/jobs",
        lambda route: route.fulfill(status=401, json=expired),
        times=1,
    )
    page.reload()
    page.wait_for_function(
        "() => document.querySelectorAll('li[data-status=\"failed\"]').length === 2"
    )
    assert len(log.urls("/v1/auth/refresh", "POST")) == refresh_count + 1
    assert page.locator('[data-role="signin"]').is_hidden()
    listed = rows(page)
    assert [r["id"] for r in listed] == [again, first_id]
    assert all(r["message"] == error["message"] for r in listed)
    assert page.locator('[data-role="retry"]').count() == 2

    # When the session is over (the API refuses the access token, then the refresh token)
    # as a video is dropped, the page asks for a sign-in, keeps the list, and once the
    # same user has signed in again the upload goes on
    def path_is(path: str) -> Callable[[str], bool]:
        return lambda url: urlsplit(url).path == path

    page.route(
        path_is("/v1/uploads"), lambda route: route.fulfill(status=401, json=expired), times=1
    )
    page.route(
        path_is("/v1/auth/refresh"), lambda route: route.fulfill(status=401, json=expired), times=1
    )
    drop_file(page, "silent-film.mp4", "video/mp4", silent.read_bytes())
    page.wait_for_selector('[data-role="signin"]:not([hidden])')
    assert signin_error.text_content() == "Your session has ended. Sign in again to carry on."
    assert page.locator('[data-role="app"]').is_hidden()
    assert page.evaluate("sessionStorage.getItem('v2m.session')") is None
    sign_in(page, DEV_EMAIL, stack.env["V2M_DEV_PASSWORD"])
    page.wait_for_function(
        """(known) => {
          const row = document.querySelector("li[data-job-id]");
          return row.dataset.status === "failed" && row.dataset.jobId
            && !known.includes(row.dataset.jobId);
        }""",
        arg=[again, first_id],
    )
    assert [r["id"] for r in rows(page)][1:] == [again, first_id]
    assert rows(page)[0]["error"] == "no_audio_stream"

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
    check_credentials(log, stack)

    # The CSP is enforced, and a violation would be caught: an inline style is refused
    page.evaluate(
        """() => document.body.insertAdjacentHTML("beforeend", '<i id="x" style="color: red"></i>')"""
    )
    for _ in range(30):
        if log.csp_violations:
            break
        page.wait_for_timeout(100)
    assert page.evaluate("getComputedStyle(document.getElementById('x')).color") != "rgb(255, 0, 0)"
    assert log.csp_violations and "style-src" in log.csp_violations[0], log.csp_violations
    log.csp_violations.clear()

    # When the user signs out, the sign-in form comes back and the jobs are gone
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector('[data-role="signin"]:not([hidden])')
    assert page.locator('[data-role="app"]').is_hidden()
    assert page.locator('[data-role="account"]').is_hidden()
    assert page.locator("li[data-job-id]").count() == 0
    assert page.evaluate("sessionStorage.getItem('v2m.session')") is None
    assert page.evaluate("document.activeElement.id") == "signin-email"

    # And after a reload it is still the form, and no job is asked for
    listed_before = len(log.urls("/v1/jobs?", "GET"))
    page.reload()
    page.wait_for_selector('[data-role="signin"]:not([hidden])')
    page.wait_for_timeout(300)
    assert page.locator('[data-role="app"]').is_hidden()
    assert page.locator("li[data-job-id]").count() == 0
    assert len(log.urls("/v1/jobs?", "GET")) == listed_before

    # When someone else signs in, none of the first user's jobs are listed
    other_email, other_password = "other@example.org", "other-password-1"
    subprocess.run(
        [sys.executable, "-m", "api.admin", "create-user", other_email, "--password-stdin"],
        input=f"{other_password}\n",
        text=True,
        env=stack.env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    sign_in(page, other_email, other_password)
    page.wait_for_selector('[data-role="empty"]:not([hidden])')
    assert page.text_content('[data-role="user-email"]') == other_email
    assert page.locator("li[data-job-id]").count() == 0


def test_open_server_needs_no_sign_in(make_stack: StackFactory, open_page: OpenPage) -> None:
    # Given an API that lets requests without credentials act as the local user
    # (V2M_AUTH_REQUIRED=false, a single-user laptop), without workers
    stack = make_stack(workers=0, auth_required="false")

    # When the page is opened, it asks who is there and needs no sign-in
    page, log = open_page(stack.api_url + "/")
    page.wait_for_selector('[data-role="empty"]:not([hidden])')
    assert page.locator('[data-role="signin"]').is_hidden()
    assert page.text_content('[data-role="user-email"]') == DEV_EMAIL
    assert "No sign-in needed" in (page.text_content('[data-role="account"]') or "")
    assert page.locator('[data-role="sign-out"]').is_hidden()

    # And it sends no credentials it does not have
    calls = [r for r in log.requests if "/v1/" in r.url]
    assert calls and not [r.url for r in calls if "authorization" in r.all_headers()]
