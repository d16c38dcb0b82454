"""Production logging: one JSON object a line, whoever logs, and no frame locals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a process of its own: configuring logging is global, and would stay configured
# for the rest of the test session.
SCRIPT = textwrap.dedent(
    """
    import logging, sys

    # uvicorn configures its loggers before it loads the app, as its LOGGING_CONFIG
    # does; --no-access-log then takes the access logger's handler away
    for name in ("uvicorn", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.StreamHandler(sys.stdout))
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    if sys.argv[1] == "--no-access-log":
        logging.getLogger("uvicorn.access").handlers = []

    import structlog
    from shared.logging import configure_logging

    configure_logging("INFO", sys.argv[2] if len(sys.argv) > 2 else "json")

    def login(password):
        raise ValueError("the database went away")

    with structlog.contextvars.bound_contextvars(job_id="job-1"):
        structlog.get_logger("worker").info("job_started")
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz", "1.1", 200
        )
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/v1/jobs/j/events?access_token=eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl&x=1",
            "1.1",
            200,
        )
        logging.getLogger("sqlalchemy.pool").warning("connection invalidated")
        logging.getLogger("some.library").info("below the libraries' level: not shown")
        try:
            login("hunter2")
        except ValueError:
            structlog.get_logger("api").error("unhandled_exception", exc_info=True)
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    """
)


def run_logging_script(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_our_uvicorns_and_libraries_logs_are_all_json_lines_with_the_bound_ids() -> None:
    lines = run_logging_script("--access-log").splitlines()

    events = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert [e["event"] for e in events] == [
        "job_started",
        "Application startup complete.",
        '127.0.0.1:5000 - "GET /healthz HTTP/1.1" 200',
        '127.0.0.1:5000 - "GET /v1/jobs/j/events?access_token=[redacted]&x=1 HTTP/1.1" 200',
        "connection invalidated",
        "unhandled_exception",
        "Exception in ASGI application",
    ]
    assert all(e["job_id"] == "job-1" and e["timestamp"] for e in events)
    assert [e.get("logger") for e in events[1:5]] == [
        "uvicorn.error",
        "uvicorn.access",
        "uvicorn.access",
        "sqlalchemy.pool",
    ]


def test_logs_never_hold_a_local_password_or_a_token_from_a_url() -> None:
    output = run_logging_script("--access-log")

    assert "hunter2" not in output
    assert "eyJ" not in output
    errors = [json.loads(line) for line in output.splitlines() if '"exception"' in line]
    assert len(errors) == 2
    for error in errors:
        assert error["exception"][0]["exc_type"] == "ValueError"
        assert error["exception"][0]["frames"][-1]["name"] == "login"


def test_the_console_renderer_shows_tracebacks_without_local_variables() -> None:
    # make run's format: the traceback is there, the frame's password is not
    output = re.sub(r"\x1b\[[0-9;]*m", "", run_logging_script("--access-log", "console"))

    assert "ValueError: the database went away" in output
    assert "hunter2" not in output
    assert "eyJ" not in output


def test_an_access_log_that_uvicorn_was_told_to_keep_off_stays_off() -> None:
    events = [
        json.loads(line)["event"] for line in run_logging_script("--no-access-log").splitlines()
    ]

    assert "Application startup complete." in events
    assert not any("GET /" in event for event in events)
