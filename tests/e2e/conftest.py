"""The page in a real browser: Debian's Chromium driven by Playwright for Python, against
the real stack of the integration tests (API serving the page, worker, RabbitMQ, `rclone
serve s3` as S3, ffmpeg).

Browsers are never downloaded (no `playwright install`): the tests launch the system
Chromium at /usr/bin/chromium (or V2M_TEST_CHROMIUM). When it or Playwright is missing
the run fails with a message saying how to install them; it is never silently skipped.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The integration suite's fixtures, reused rather than copied: the RabbitMQ URL, the S3
# server (rclone over a temp dir), ffmpeg, generated media and `make_stack(**settings)` (API + workers on their own
# queue, bucket and SQLite database).
from tests.integration.conftest import (  # noqa: F401
    amqp_url,
    ffmpeg_available,
    make_stack,
    media_dir,
    s3_endpoint,
)

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Page,
        Playwright,
        Request,
        Response,
        ViewportSize,
    )

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("V2M_TEST_CHROMIUM", "/usr/bin/chromium")
# The machine may have no network: without the background-networking switches Chromium
# keeps dialling Google services and floods the log with refused connections.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1100, "height": 900}

INSTALL_HINT = (
    "The browser tests need Debian's Chromium and Playwright for Python: "
    "`apt-get install -y chromium` and `.venv/bin/pip install playwright` "
    "(never `playwright install`: the system Chromium is used)."
)


@pytest.fixture(scope="session")
def pw() -> Iterator[Playwright]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright for Python is not installed. {INSTALL_HINT}")
    manager = sync_playwright().start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="session")
def browser(pw: Playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}. {INSTALL_HINT}")
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class PageLog:
    """What the page did: requests it sent and the answers, console output, uncaught
    errors, Content-Security-Policy violations, and the CSP the page was served with."""

    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    csp: str = ""

    def urls(self, contains: str, method: str | None = None) -> list[str]:
        return [
            r.url
            for r in self.requests
            if contains in r.url and (method is None or r.method == method)
        ]


# Every CSP violation, whether reported by the securitypolicyviolation event or only in
# Chromium's console ("Refused to … because it violates … Content Security Policy").
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`securitypolicyviolation: ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`);
}, true);
"""


def is_csp_violation(text: str) -> bool:
    return text.startswith("securitypolicyviolation:") or "Content Security Policy" in text


# Records, per file name, every value an upload progress bar takes and every status a row
# goes through, so a test can tell they were shown even when a step is over in a blink.
RECORD_PROGRESS = """
window.__uploadProgress = {};
window.__statuses = {};
const nameOf = (node) => node.closest("li[data-job-id]").querySelector(".job__name").textContent;
new MutationObserver((records) => {
  for (const { target } of records) {
    if (target instanceof HTMLProgressElement && target.dataset.role === "upload-progress") {
      (window.__uploadProgress[nameOf(target)] ||= []).push(Number(target.value));
    } else if (target instanceof HTMLLIElement && target.dataset.status) {
      const seen = (window.__statuses[nameOf(target)] ||= []);
      if (seen.at(-1) !== target.dataset.status) seen.push(target.dataset.status);
    }
  }
}).observe(document, {
  subtree: true,
  attributes: true,
  attributeFilter: ["value", "data-status"],
});
"""


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[str], tuple[Page, PageLog]]]:
    """open_page(url) → (page, log) in a fresh context (its own storage).

    The page must be served with a Content-Security-Policy. Fails the test if the page
    threw an uncaught error or broke its CSP (a test that provokes a violation on
    purpose clears `log.csp_violations`).
    """
    contexts = []
    logs: list[PageLog] = []

    def create(url: str) -> tuple[Page, PageLog]:
        context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        log = PageLog()
        logs.append(log)
        page.on("request", lambda request: log.requests.append(request))
        page.on("response", lambda response: log.responses.append(response))

        def on_console(message: ConsoleMessage) -> None:
            log.console.append(f"{message.type}: {message.text}")
            if is_csp_violation(message.text):
                log.csp_violations.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: log.errors.append(str(exc)))
        page.add_init_script(REPORT_CSP_VIOLATIONS)
        page.add_init_script(RECORD_PROGRESS)
        response = page.goto(url)
        assert response is not None and response.ok, response
        log.csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in log.csp, f"the page has no strict CSP: {log.csp!r}"
        return page, log

    yield create
    for context in contexts:
        context.close()
    for log in logs:
        assert not log.errors, f"uncaught errors in the page: {log.errors}\n{log.console}"
        assert not log.csp_violations, f"CSP violations: {log.csp_violations}"


@pytest.fixture(scope="session")
def slow_ffmpeg(tmp_path_factory: pytest.TempPathFactory) -> Callable[[float], str]:
    """slow_ffmpeg(rate) → a V2M_FFMPEG_BIN that reads its input at `rate`× real time.

    The real ffmpeg converts a minute of audio in a fraction of a second; capped with
    `-readrate`, the page can be seen (and photographed) mid-conversion.
    """
    directory = tmp_path_factory.mktemp("bin")

    def make(rate: float) -> str:
        path = directory / f"ffmpeg-readrate-{rate:g}"
        path.write_text(f'#!/bin/sh\nexec ffmpeg -readrate {rate:g} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)

    return make


DEV_EMAIL = "dev@localhost"  # the stack's local user (V2M_DEV_USER_EMAIL's default)


def sign_in(page: Page, email: str, password: str) -> None:
    """Fill the sign-in form and send it from the keyboard (Enter in the password field)."""
    page.wait_for_selector('[data-role="signin"]:not([hidden])')
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")


def save_screenshot(page: Page, name: str) -> Path:
    """Always taken (a failure to render fails the test); written into docs/screenshots/
    only with V2M_UPDATE_SCREENSHOTS=1, so ordinary runs leave the work tree clean."""
    directory = (
        SCREENSHOTS
        if os.environ.get("V2M_UPDATE_SCREENSHOTS") == "1"
        else Path(tempfile.gettempdir())
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path
