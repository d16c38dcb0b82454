"""shared.storage.Storage against a real S3 server that checks every signature
(`rclone serve s3`, started by the session fixture, or V2M_TEST_S3_ENDPOINT).

What a browser's presigned PUT may and may not do is proved here: the server refuses a
body of another size or type, a tampered signature, an expired URL and a wrong secret.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import botocore.auth
import httpx
import minio.time
import pytest
import structlog
import structlog.testing

from shared.config import Settings
from shared.errors import StorageError
from shared.storage import Storage
from tests.docs.blocks import run_by
from tests.integration.conftest import ROOT, S3_KEY, S3_SECRET, free_port
from tests.unit.conftest import make_settings

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def settings_for(endpoint: str, bucket: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "s3_endpoint_url": endpoint,
        "s3_public_endpoint_url": None,  # browsers reach the same host here
        "s3_bucket": bucket,
        "s3_access_key": S3_KEY,
        "s3_secret_key": S3_SECRET,
        "s3_cors_origins": [],
        **overrides,
    }
    return make_settings(**values)


@pytest.fixture
def storage(s3_endpoint: str) -> Iterator[Storage]:
    """A Storage on a fresh bucket (made by ensure_bucket), emptied and removed after."""
    store = Storage(settings_for(s3_endpoint, f"storage-{uuid.uuid4().hex[:10]}"))
    store.ensure_bucket()
    yield store
    for obj in store.client.list_objects(store.bucket, recursive=True):
        assert obj.object_name is not None
        store.client.remove_object(store.bucket, obj.object_name)
    store.client.remove_bucket(store.bucket)


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def put(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.put(url, content=body, headers=headers, timeout=30)


# --------------------------------------------------------------------------- objects


def test_upload_stat_read_head_delete_round_trip(storage: Storage, tmp_path: Path) -> None:
    source = random_file(tmp_path / "a.mp3", 300_000)
    key = "outputs/user-1/Été à la plage+1.mp3"

    storage.upload_file(str(source), key, content_type="audio/mpeg")

    info = storage.stat(key)
    assert info is not None and (info.size_bytes, info.content_type) == (300_000, "audio/mpeg")
    assert storage.read_head(key, 12) == source.read_bytes()[:12]
    storage.delete(key)
    assert storage.stat(key) is None
    assert storage.read_head(key, 12) == b""
    storage.delete(key)  # deleting what is gone is fine, as in S3


def test_read_head_of_a_short_or_empty_object_returns_what_there_is(
    storage: Storage, tmp_path: Path
) -> None:
    storage.upload_file(str(random_file(tmp_path / "s", 5)), "short", content_type="video/mp4")
    storage.upload_file(str(random_file(tmp_path / "e", 0)), "empty", content_type="video/mp4")

    assert len(storage.read_head("short", 12)) == 5
    assert storage.read_head("empty", 12) == b""


def test_a_large_file_goes_up_in_parts_and_arrives_whole(storage: Storage, tmp_path: Path) -> None:
    # Given a file above the SDK's 5 MiB part size
    source = random_file(tmp_path / "big.mp3", 12 * MiB + 5)
    # When it is uploaded
    storage.upload_file(str(source), "outputs/big.mp3", content_type="audio/mpeg")
    # Then the object is the file, byte for byte
    response = storage.client.get_object(storage.bucket, "outputs/big.mp3")
    try:
        assert response.read() == source.read_bytes()
    finally:
        response.close()
        response.release_conn()
    info = storage.stat("outputs/big.mp3")
    assert info is not None and info.size_bytes == 12 * MiB + 5


# --------------------------------------------------------------------------- presigned GET


@pytest.fixture
def stored_clip(
    storage: Storage, sample: Callable[[str], Path], tmp_path: Path
) -> tuple[str, Path]:
    source = sample("mp4_moov_at_end")
    storage.upload_file(str(source), "uploads/u/clip à.mp4", content_type="video/mp4")
    return "uploads/u/clip à.mp4", source


def test_internal_url_is_readable_whole_and_by_range(
    storage: Storage, stored_clip: tuple[str, Path], s3_endpoint: str
) -> None:
    key, source = stored_clip
    url = storage.presign_internal_get(key, expires_s=300)

    assert url.startswith(f"{s3_endpoint}/")  # the internal host
    assert httpx.get(url, timeout=30).content == source.read_bytes()
    ranged = httpx.get(url, headers={"Range": "bytes=4-7"}, timeout=30)
    assert ranged.status_code in (200, 206)
    assert ranged.headers["Content-Range"] == f"bytes 4-7/{source.stat().st_size}"
    assert ranged.content == source.read_bytes()[4:8]


def test_ffmpeg_reads_a_moov_at_end_mp4_through_the_internal_url(
    storage: Storage, stored_clip: tuple[str, Path]
) -> None:
    # moov at the end: ffmpeg must seek with range requests to read this file.
    key, _ = stored_clip
    url = storage.presign_internal_get(key, expires_s=300)
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None

    done = subprocess.run(
        [ffmpeg, "-v", "error", "-nostdin", "-i", url, "-map", "0:a:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr


def test_download_url_names_the_mp3_for_the_browser(storage: Storage, tmp_path: Path) -> None:
    storage.upload_file(
        str(random_file(tmp_path / "o", 100)), "outputs/j.mp3", content_type="audio/mpeg"
    )

    got = httpx.get(
        storage.presign_download("outputs/j.mp3", filename="Été.mov", expires_s=60), timeout=30
    )

    assert got.status_code == 200
    assert got.headers["Content-Type"] == "audio/mpeg"
    assert got.headers["Content-Disposition"].startswith('attachment; filename="Ete.mp3"')


def test_download_url_is_never_cached_so_a_ranged_answer_cannot_pass_for_the_file(
    storage: Storage, tmp_path: Path
) -> None:
    # Given a server that answers a ranged GET with 200 and only the range's bytes
    source = random_file(tmp_path / "o", 1000)
    storage.upload_file(str(source), "outputs/r.mp3", content_type="audio/mpeg")
    url = storage.presign_download("outputs/r.mp3", filename="r.mov", expires_s=60)

    # When the page's player asks for a range of the download URL
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=30)

    # Then the answer forbids caching, so the download link fetches the whole file again
    assert ranged.content == source.read_bytes()[10:20]
    assert ranged.headers["Cache-Control"] == "no-store"
    assert httpx.get(url, timeout=30).content == source.read_bytes()


# --------------------------------------------------------------------------- presigned PUT


def grant(storage: Storage, expires_s: int = 300) -> tuple[str, dict[str, str]]:
    """A presigned PUT of 5 bytes of video/mp4."""
    return storage.presign_put(
        "uploads/u/v.mp4", content_type="video/mp4", size_bytes=5, expires_s=expires_s
    )


def assert_refused(response: httpx.Response) -> None:
    """S3's refusal: AccessDenied (AWS answers 403; rclone 400 for an expired URL)."""
    assert response.status_code in (400, 403), response.text
    assert "<Code>AccessDenied</Code>" in response.text


def test_presigned_put_with_its_own_headers_is_stored(storage: Storage) -> None:
    url, headers = grant(storage)

    assert put(url, b"12345", headers).status_code == 200

    assert storage.read_head("uploads/u/v.mp4", 10) == b"12345"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"123456", "video/mp4", id="another-size"),
        pytest.param(b"1234", "video/mp4", id="a-smaller-size"),
        pytest.param(b"12345", "video/webm", id="another-type"),
    ],
)
def test_presigned_put_of_another_size_or_type_is_refused(
    storage: Storage, body: bytes, content_type: str
) -> None:
    url, _ = grant(storage)

    assert put(url, body, {"Content-Type": content_type}).status_code == 403
    assert storage.stat("uploads/u/v.mp4") is None


def test_presigned_put_with_a_tampered_signature_is_refused(storage: Storage) -> None:
    url, headers = grant(storage)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]

    tampered = urlunsplit(parts._replace(query=urlencode(query)))

    assert put(tampered, b"12345", headers).status_code == 403
    assert storage.stat("uploads/u/v.mp4") is None


def test_presigned_put_for_another_key_is_refused(storage: Storage) -> None:
    url, headers = grant(storage)

    moved = url.replace("/uploads/u/v.mp4?", "/uploads/u/other.mp4?")

    assert put(moved, b"12345", headers).status_code == 403


def test_expired_urls_are_refused(
    storage: Storage, stored_clip: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given URLs valid for 60 s, signed 90 s ago
    signed_at = datetime.now(UTC) - timedelta(seconds=90)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: signed_at)
    monkeypatch.setattr(minio.time, "utcnow", lambda: signed_at)
    put_url, headers = grant(storage, expires_s=60)
    key, _ = stored_clip
    get_url = storage.presign_internal_get(key, expires_s=60)
    download_url = storage.presign_download(key, filename="a.mp4", expires_s=60)
    # When they are used now
    # Then storage refuses each of them
    assert_refused(put(put_url, b"12345", headers))
    assert_refused(httpx.get(get_url, timeout=30))
    assert_refused(httpx.get(download_url, timeout=30))
    assert storage.stat("uploads/u/v.mp4") is None


def test_urls_signed_with_a_wrong_secret_are_refused(
    storage: Storage, stored_clip: tuple[str, Path], s3_endpoint: str
) -> None:
    wrong = Storage(settings_for(s3_endpoint, storage.bucket, s3_secret_key="not-the-secret"))
    key, _ = stored_clip

    put_url, headers = grant(wrong)

    assert put(put_url, b"12345", headers).status_code == 403
    assert httpx.get(wrong.presign_internal_get(key, expires_s=60), timeout=30).status_code == 403
    assert storage.stat("uploads/u/v.mp4") is None


def test_calls_with_a_wrong_secret_are_storage_errors(
    storage: Storage, stored_clip: tuple[str, Path], s3_endpoint: str, tmp_path: Path
) -> None:
    wrong = Storage(settings_for(s3_endpoint, storage.bucket, s3_secret_key="not-the-secret"))
    key, source = stored_clip
    other = random_file(tmp_path / "b.mp3", 100)

    calls: list[Callable[[], None]] = [
        lambda: wrong.upload_file(str(other), "b.mp3", content_type="audio/mpeg"),
        lambda: wrong.delete(key),
        wrong.ping,
    ]
    for call in calls:
        with pytest.raises(StorageError) as caught:
            call()
        assert "403" in (caught.value.detail or "")
    with pytest.raises(StorageError):
        wrong.ensure_bucket()
    assert storage.read_head(key, 4) == source.read_bytes()[:4]


# --------------------------------------------------------------------------- bucket and errors


def test_ensure_bucket_is_idempotent_and_ping_sees_the_bucket(storage: Storage) -> None:
    storage.ensure_bucket()  # already there (the fixture made it): nothing changes

    storage.ping()


def test_bucket_settings_the_server_lacks_are_warned_about_and_set_up_goes_on(
    s3_endpoint: str,
) -> None:
    # rclone serve s3 has neither bucket CORS nor lifecycle rules
    bucket = f"setup-{uuid.uuid4().hex[:10]}"
    store = Storage(settings_for(s3_endpoint, bucket, s3_cors_origins=["http://127.0.0.1:8000"]))
    try:
        with structlog.testing.capture_logs() as logs:
            store.ensure_bucket()
            store.ensure_bucket()
        store.ping()
    finally:
        store.client.remove_bucket(bucket)
    warned = [e for e in logs if e["event"] == "bucket_setting_not_supported"]
    assert [e["setting"] for e in warned] == ["cors", "lifecycle"] * 2
    assert all(e["hint"] for e in warned)
    assert {e["setting"]: e["log_level"] for e in warned} == {
        "cors": "warning",
        "lifecycle": "info",
    }


def test_a_missing_bucket_is_a_storage_error(s3_endpoint: str, tmp_path: Path) -> None:
    missing = Storage(settings_for(s3_endpoint, f"missing-{uuid.uuid4().hex[:8]}"))
    source = random_file(tmp_path / "a.mp3", 10)

    with pytest.raises(StorageError):
        missing.upload_file(str(source), "k", content_type="audio/mpeg")
    with pytest.raises(StorageError):
        missing.ping()


def test_unreachable_storage_is_a_retryable_storage_error() -> None:
    nowhere = Storage(settings_for(f"http://127.0.0.1:{free_port()}", "bucket"))

    for call in (lambda: nowhere.read_head("k", 12), lambda: nowhere.stat("k"), nowhere.ping):
        with pytest.raises(StorageError) as caught:
            call()
        assert caught.value.retryable


def test_the_server_answers_a_browsers_cors_preflight(s3_endpoint: str) -> None:
    preflight = httpx.options(
        f"{s3_endpoint}/any-bucket/uploads/a.mp4",
        headers={
            "Origin": "http://127.0.0.1:8000",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )

    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "http://127.0.0.1:8000")
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]


def test_the_worker_memory_comparison_of_s3_libraries_runs() -> None:
    # The command docs/PERFORMANCE.md gives for its figures, with one run per library.
    block = run_by(
        "docs/PERFORMANCE.md",
        "tests/integration/test_storage.py::test_the_worker_memory_comparison_of_s3_libraries_runs",
    )
    argv = shlex.split(block.text.strip())
    assert argv[:3] == [".venv/bin/python", "-m", "bench.storage_rss"], argv
    runs = argv.index("--runs")
    argv[runs + 1] = "1"

    out = subprocess.run(
        [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines()[2:]]
    assert [row[0].strip() for row in rows] == ["none", "minio", "boto3"]
    assert all(cell.strip().endswith("MiB") for row in rows for cell in row[1:])
