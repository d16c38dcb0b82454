"""shared.storage: key sanitising, download names, presigning (local), bucket set-up (moto)
and error translation. Calls to a real S3 server are in tests/integration/test_storage.py."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from urllib3.exceptions import MaxRetryError, NewConnectionError

from shared.errors import StorageError
from shared.storage import (
    MAX_KEY_NAME,
    Storage,
    content_disposition,
    download_name,
    sanitize_filename,
)
from tests.unit.conftest import make_settings

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import LifecycleRuleTypeDef

ROOT = Path(__file__).resolve().parents[2]
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")

# --------------------------------------------------------------------------- sanitize_filename


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("holiday.mov", "holiday.mov"),
        ("my holiday (1).mp4", "my_holiday_1.mp4"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\clip.avi", "clip.avi"),
        ("C:\\Users\\me\\Videos\\clip.mov", "clip.mov"),
        ("/abs/path/to/video.mkv", "video.mkv"),
        ("a\x00b\nc\td.mp4", "a_b_c_d.mp4"),
        ("café.mp4", "cafe.mp4"),
        ("Ünïcödé ñame.webm", "Unicode_name.webm"),
        ("ﬁle.mp4", "file.mp4"),
        ("--.hidden.mp4", "hidden.mp4"),
    ],
)
def test_sanitize_filename_keeps_a_safe_key_segment(filename: str, expected: str) -> None:
    assert sanitize_filename(filename) == expected


@pytest.mark.parametrize("filename", ["", "   ", "..", "../..", "/", "\\", "???", "\x00\x01"])
def test_sanitize_filename_falls_back_to_the_default_when_nothing_is_left(filename: str) -> None:
    assert sanitize_filename(filename) == "file"
    assert sanitize_filename(filename, default="video") == "video"


@pytest.mark.parametrize(
    "filename",
    ["../../secret", "a/b/../c.mp4", "..\\x.mp4", "\u202eevil.mp4", "x" * 300, "\x7f.mp4"],
)
def test_sanitize_filename_never_lets_a_separator_or_control_char_through(filename: str) -> None:
    name = sanitize_filename(filename)

    assert SAFE_SEGMENT.match(name), name
    assert name not in (".", "..")
    assert len(name) <= MAX_KEY_NAME


def test_long_name_is_cut_to_120_characters_and_keeps_its_extension() -> None:
    name = sanitize_filename("a" * 496 + ".mp4")

    assert len(name) <= 120
    assert name.endswith(".mp4")
    assert name.startswith("aaaa")


def test_long_unicode_name_is_cut_and_keeps_its_extension() -> None:
    name = sanitize_filename("é" * 500 + ".webm")

    assert len(name) <= 120
    assert name.endswith(".webm")


def test_name_without_any_ascii_letter_keeps_its_extension() -> None:
    # A Japanese, Chinese or Cyrillic name folds to nothing but the extension; the key
    # should still end in ".mp4" (ffmpeg uses it as a probing hint, and the ASCII
    # fallback of the download name is built the same way).
    assert sanitize_filename("日本語.mp4").endswith(".mp4")
    assert sanitize_filename("Видео.mov").endswith(".mov")


# --------------------------------------------------------------------------- download_name


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("holiday.mov", "holiday.mp3"),
        ("holiday", "holiday.mp3"),
        ("archive.tar.gz", "archive.tar.mp3"),
        ("Été à Paris.mp4", "Été à Paris.mp3"),
        ("日本語.mp4", "日本語.mp3"),
        ("dir/sub/clip.mkv", "clip.mp3"),
        ("C:\\Videos\\clip.avi", "clip.mp3"),
        ("bell\x07.mov", "bell.mp3"),
        (".hidden", ".hidden.mp3"),
        ("", "audio.mp3"),
        ("dir/", "audio.mp3"),
    ],
)
def test_download_name_is_the_original_stem_with_mp3(filename: str, expected: str) -> None:
    assert download_name(filename) == expected


def test_download_name_is_bounded() -> None:
    assert len(download_name("x" * 1000 + ".mov")) == 200 + len(".mp3")


# --------------------------------------------------------------------------- content_disposition


def test_content_disposition_has_ascii_fallback_and_utf8_name() -> None:
    header = content_disposition("Été à Paris.mp3")

    assert header == (
        "attachment; filename=\"Ete_a_Paris.mp3\"; filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20Paris.mp3"
    )
    assert header.isascii()


def test_content_disposition_cannot_be_broken_by_quotes_or_newlines() -> None:
    header = content_disposition('evil"; filename="x.exe\r\nSet-Cookie: a=b.mp3')

    assert "\r" not in header and "\n" not in header
    fallback = re.search(r'filename="([^"]*)"', header)
    assert fallback is not None
    assert SAFE_SEGMENT.match(fallback.group(1))
    assert header.count('"') == 2


def test_content_disposition_fallback_keeps_mp3_for_non_latin_names() -> None:
    header = content_disposition(download_name("日本語.mp4"))

    assert 'filename="' in header and '.mp3"' in header
    assert "filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.mp3" in header


# --------------------------------------------------------------------------- presigning (local)


@pytest.fixture
def split_storage() -> Storage:
    """Internal and public endpoints differ, as in Compose and Kubernetes."""
    return Storage(
        make_settings(
            s3_endpoint_url="http://minio:9000",
            s3_public_endpoint_url="https://files.example.com",
            s3_bucket="video2mp3",
        )
    )


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_presigned_put_is_signed_for_the_public_host(split_storage: Storage) -> None:
    url, headers = split_storage.presign_put(
        "uploads/abc/my file.mp4", content_type="video/mp4", size_bytes=1234, expires_s=600
    )

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "files.example.com")
    assert unquote(parts.path) == "/video2mp3/uploads/abc/my file.mp4"
    q = query(url)
    assert q["X-Amz-SignedHeaders"] == "content-length;content-type;host"
    assert q["X-Amz-Expires"] == "600"
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert q["X-Amz-Credential"].startswith("testing/")
    assert q["X-Amz-Credential"].endswith("/us-east-1/s3/aws4_request")
    assert re.fullmatch(r"[0-9a-f]{64}", q["X-Amz-Signature"])
    assert headers == {"Content-Type": "video/mp4", "Content-Length": "1234"}


def test_presigned_put_signature_covers_type_and_length(split_storage: Storage) -> None:
    def signature(**kw: Any) -> str:
        args: dict[str, Any] = {"content_type": "video/mp4", "size_bytes": 1234, "expires_s": 600}
        url, _ = split_storage.presign_put("uploads/abc/a.mp4", **{**args, **kw})
        return query(url)["X-Amz-Signature"]

    base = signature()
    assert signature(size_bytes=1235) != base
    assert signature(content_type="video/webm") != base


def test_presigned_download_uses_public_host_and_names_the_mp3(split_storage: Storage) -> None:
    url = split_storage.presign_download(
        "outputs/job-1.mp3", filename="Été à Paris.mov", expires_s=300
    )

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "files.example.com")
    assert parts.path == "/video2mp3/outputs/job-1.mp3"
    q = query(url)
    assert q["response-content-disposition"] == content_disposition("Été à Paris.mp3")
    assert q["response-content-type"] == "audio/mpeg"
    assert q["X-Amz-Expires"] == "300"


def test_presigned_internal_get_uses_the_internal_host(split_storage: Storage) -> None:
    url = split_storage.presign_internal_get("uploads/abc/a.mp4", expires_s=900)

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", "minio:9000")
    assert parts.path == "/video2mp3/uploads/abc/a.mp4"
    q = query(url)
    assert q["X-Amz-SignedHeaders"] == "host"
    assert q["X-Amz-Expires"] == "900"
    assert "response-content-disposition" not in q


def test_without_public_endpoint_urls_use_the_internal_one() -> None:
    storage = Storage(
        make_settings(s3_endpoint_url="http://minio:9000", s3_public_endpoint_url=None)
    )

    put_url, _ = storage.presign_put("k.mp4", content_type="video/mp4", size_bytes=1, expires_s=60)
    get_url = storage.presign_download("k.mp3", filename="k.mp4", expires_s=60)

    assert urlsplit(put_url).netloc == urlsplit(get_url).netloc == "minio:9000"


# --------------------------------------------------------------------------- bucket set-up (moto)


@pytest.fixture
def aws() -> Iterator[S3Client]:
    """AWS's S3, answered in-process by moto (boto3 only: the minio SDK is not mocked)."""
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


def aws_storage(**settings: Any) -> Storage:
    return Storage(make_settings(s3_endpoint_url=None, s3_public_endpoint_url=None, **settings))


def test_ensure_bucket_creates_the_bucket_with_cors_and_is_idempotent(aws: S3Client) -> None:
    storage = aws_storage(s3_cors_origins=["https://app.example.com"])

    storage.ensure_bucket()
    storage.ensure_bucket()

    aws.head_bucket(Bucket=storage.bucket)
    (rule,) = aws.get_bucket_cors(Bucket=storage.bucket)["CORSRules"]
    assert rule["AllowedOrigins"] == ["https://app.example.com"]
    assert set(rule["AllowedMethods"]) == {"PUT", "GET", "HEAD"}


def test_ensure_bucket_without_origins_leaves_cors_to_the_server(aws: S3Client) -> None:
    storage = aws_storage(s3_cors_origins=[])

    storage.ensure_bucket()

    aws.head_bucket(Bucket=storage.bucket)
    with pytest.raises(ClientError, match="NoSuchCORSConfiguration"):
        aws.get_bucket_cors(Bucket=storage.bucket)


def test_ensure_bucket_sets_our_lifecycle_rules_and_keeps_other_rules(
    aws: S3Client,
) -> None:
    # Given a bucket with an operator's own lifecycle rule
    storage = aws_storage(output_retention_days=3)
    aws.create_bucket(Bucket=storage.bucket)
    theirs: LifecycleRuleTypeDef = {
        "ID": "their-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
    }
    aws.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": [theirs]}
    )

    # When set-up runs (twice: it is idempotent)
    storage.ensure_bucket()
    storage.ensure_bucket()

    # Then MP3s expire after the retention days, unfinished multipart uploads of inputs
    # are aborted, and the operator's rule stands
    rules = {
        r["ID"]: r for r in aws.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]
    }
    assert set(rules) == {"their-logs", "v2m-output-retention", "v2m-abort-incomplete-uploads"}
    ours = rules["v2m-output-retention"]
    assert ours["Filter"] == {"Prefix": "outputs/"} and ours["Expiration"] == {"Days": 3}
    abort = rules["v2m-abort-incomplete-uploads"]
    assert abort["Filter"] == {"Prefix": "uploads/"}
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_a_refused_bucket_set_up_is_a_storage_error(aws: S3Client) -> None:
    storage = aws_storage(s3_bucket="x")  # too short for S3: refused

    with pytest.raises(StorageError, match="Could not prepare bucket"):
        storage.ensure_bucket()


# --------------------------------------------------------------------------- errors


def test_unreachable_storage_is_translated_to_a_retryable_storage_error(
    split_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kw: Any) -> None:
        reason = NewConnectionError(None, "connection refused")  # type: ignore[arg-type]
        raise MaxRetryError(pool=None, url="/video2mp3", reason=reason)  # type: ignore[arg-type]

    monkeypatch.setattr(split_storage.client, "stat_object", refuse)
    monkeypatch.setattr(split_storage.client, "bucket_exists", refuse)
    monkeypatch.setattr(split_storage.client, "fput_object", refuse)

    with pytest.raises(StorageError) as stat_error:
        split_storage.stat("uploads/a.mp4")
    with pytest.raises(StorageError):
        split_storage.ping()
    with pytest.raises(StorageError):
        split_storage.upload_file("out.mp3", "outputs/a.mp3", content_type="audio/mpeg")
    assert isinstance(stat_error.value.__cause__, MaxRetryError)
    assert stat_error.value.retryable
    assert "MaxRetryError" in (stat_error.value.detail or "")


# --------------------------------------------------------------------------- the worker's memory


def modules_loaded_by(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after ``statement``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{statement}; import sys; print(' '.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_the_worker_and_its_storage_calls_never_load_boto3_or_alembic() -> None:
    # boto3 costs a worker more memory than the minio SDK (docs/PERFORMANCE.md); the
    # start-up set-up, which needs boto3 and Alembic, runs in a child process.
    statement = (
        "import worker.__main__; from shared.config import Settings; "
        "from shared.storage import Storage; "
        "Storage(Settings(_env_file=None)).presign_internal_get('uploads/a.mp4', expires_s=60)"
    )

    loaded = modules_loaded_by(statement)

    assert "minio" in loaded
    assert {"boto3", "botocore", "s3transfer", "alembic", "fastapi", "starlette"} & loaded == set()
