"""ffmpeg's and ffprobe's output names the presigned input URL: its secrets never reach
the error detail that is logged."""

from __future__ import annotations

import shutil
import socket

import pytest

from shared.errors import AppError, StorageError
from shared.media.redact import REDACTED, redact
from worker.ffmpeg import probe, run_transcode

SIGNATURE = "5d1c0e7f9a8b6c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d"
CREDENTIAL = "AKIAEXAMPLE123%2F20261207%2Fus-east-1%2Fs3%2Faws4_request"
QUERY = (
    f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}"
    f"&X-Amz-Date=20261207T160000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={SIGNATURE}"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_no_secret(text: str | None) -> None:
    assert text is not None
    assert SIGNATURE not in text and "AKIAEXAMPLE123" not in text
    assert REDACTED in text


@pytest.mark.parametrize(
    "line",
    [
        f"[http @ 0x55] HTTP error 403 Forbidden on https://s3.test/b/uploads/a.mp4?{QUERY}",
        f"https://s3.test/b/uploads/a.mp4?{QUERY}: Server returned 403 Forbidden",
        f"'http://s3.test/b/a.mp4?{QUERY}': Connection refused",
        f"Invalid data: X-Amz-Signature={SIGNATURE}",  # a line cut before the URL's start
        f"X-Amz-Credential%3D{CREDENTIAL}&X-Amz-Signature%3D{SIGNATURE}",
    ],
    ids=["https", "prefix", "quoted", "bare-parameter", "percent-encoded"],
)
def test_presigned_url_secrets_are_cut_from_a_line(line: str) -> None:
    assert_no_secret(redact(line))


def test_a_line_without_a_url_is_left_as_it_is() -> None:
    line = "[mov,mp4,m4a @ 0x5] moov atom not found"
    assert redact(line) == line


def test_ffprobe_failure_detail_does_not_carry_the_signed_url() -> None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("ffprobe is not installed")
    url = f"http://127.0.0.1:{closed_port()}/bucket/uploads/a.mp4?{QUERY}"

    with pytest.raises(AppError) as failed:
        probe(ffprobe, url, timeout_s=30)

    assert_no_secret(failed.value.detail)
    assert "127.0.0.1" in (failed.value.detail or "")  # the rest of the line is kept


def test_ffmpeg_failure_detail_does_not_carry_the_signed_url() -> None:
    url = f"https://s3.test/bucket/uploads/a.mp4?{QUERY}"
    argv = ["sh", "-c", f"echo '[https @ 0x1] {url}: Server returned 403 Forbidden' >&2; exit 1"]

    with pytest.raises(AppError) as failed:
        run_transcode(argv, on_progress=lambda _p: None, timeout_s=30)

    assert isinstance(failed.value, StorageError)  # still classified from the whole line
    assert_no_secret(failed.value.detail)
