"""The worker's stdlib S3 client: SigV4 against AWS's example and botocore, retries, errors.

No sockets: requests go to a fake connection that records them and plays back answers.
Round trips against a real S3 HTTP server are in tests/integration/test_s3lite.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from shared import s3lite
from shared.config import Settings
from shared.errors import StorageError
from shared.s3lite import Credentials, S3Lite, presign_url
from shared.storage import Storage
from tests.unit.conftest import make_settings

FROZEN = datetime(2026, 3, 1, 12, 30, 45, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both signers see the same instant."""
    monkeypatch.setattr(s3lite, "_clock", FROZEN.timestamp)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: FROZEN.replace(tzinfo=None))


# --------------------------------------------------------------------------- presigning


def test_presigned_get_matches_the_example_in_aws_s3_documentation() -> None:
    # The "GET /test.txt" query-string authentication example of the S3 API reference
    # (sigv4-query-string-auth): its credentials, date and expected signature.
    creds = Credentials(
        "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1"
    )
    url = presign_url(
        creds,
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        expires_s=86400,
        now=datetime(2013, 5, 24, tzinfo=UTC).timestamp(),
    )

    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def botocore_presigned(
    settings: Settings, method: str, url: str, headers: dict[str, str], expires_s: int
) -> str:
    """The URL botocore's own query signer makes for the same request."""
    request = AWSRequest(method=method, url=url, headers=headers)
    S3SigV4QueryAuth(
        BotoCredentials(settings.s3_access_key, settings.s3_secret_key),
        "s3",
        settings.s3_region,
        expires=expires_s,
    ).add_auth(request)
    return str(request.url)


KEYS = ["uploads/u/abc/clip.mp4", "uploads/u/abc/été à l'eau+1.mp4"]


@pytest.mark.parametrize("key", KEYS)
def test_presigned_internal_get_is_what_botocore_signs(frozen_clock: None, key: str) -> None:
    # Given internal and public endpoints that differ, as in Compose and Kubernetes
    settings = make_settings(
        s3_endpoint_url="http://minio:9000", s3_public_endpoint_url="https://files.example.com"
    )
    # When the worker's client and the API's storage presign the same GET at one instant
    ours = urlsplit(S3Lite(settings).presign_internal_get(key, expires_s=900))
    api = urlsplit(Storage(settings).presign_internal_get(key, expires_s=900))
    theirs = urlsplit(
        botocore_presigned(settings, "GET", f"http://minio:9000/video2mp3/{quote(key)}", {}, 900)
    )
    # Then the URLs are botocore's: internal host, path, every query parameter, signature
    assert (ours.scheme, ours.netloc, ours.path) == ("http", "minio:9000", theirs.path)
    assert parse_qs(ours.query) == parse_qs(theirs.query) == parse_qs(api.query)


@pytest.mark.parametrize("key", KEYS)
def test_presigned_put_signs_type_and_length_as_botocore_does(frozen_clock: None, key: str) -> None:
    settings = make_settings(
        s3_endpoint_url="http://minio:9000", s3_public_endpoint_url="https://files.example.com"
    )

    url, headers = Storage(settings).presign_put(
        key, content_type="video/mp4", size_bytes=12345, expires_s=3600
    )

    theirs = botocore_presigned(
        settings, "PUT", f"https://files.example.com/video2mp3/{quote(key)}", headers, 3600
    )
    assert headers == {"Content-Type": "video/mp4", "Content-Length": "12345"}
    assert urlsplit(url)[:3] == urlsplit(theirs)[:3]
    assert parse_qs(urlsplit(url).query) == parse_qs(urlsplit(theirs).query)
    assert parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"] == [
        "content-length;content-type;host"
    ]


def test_presigned_url_expires_and_signs_extra_headers() -> None:
    creds = Credentials("AK", "SK", "eu-west-1")
    url = presign_url(
        creds, "PUT", "http://s3.test:9000/b/k", expires_s=60, headers={"Content-Type": "a/b"}
    )

    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["X-Amz-SignedHeaders"] == "content-type;host"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Credential"].endswith("/eu-west-1/s3/aws4_request")


# --------------------------------------------------------------------------- a fake wire


@dataclass
class Sent:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeResponse:
    def __init__(self, answer: Answer) -> None:
        self.status = answer.status
        self._body = answer.body
        self._headers = answer.headers

    def read(self, amt: int | None = None) -> bytes:
        data, self._body = (self._body, b"") if amt is None else (self._body[:amt], b"")
        return data

    def isclosed(self) -> bool:
        return True

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self._headers.items())


class FakeConnection:
    """Records each request; answers from a script (an Answer, or an exception to raise)."""

    def __init__(self, script: list[Answer | Exception]) -> None:
        self.script = list(script)
        self.sent: list[Sent] = []
        self.sock = object()

    def request(self, method: str, target: str, body: Any = None, headers: Any = None) -> None:
        data = body.read() if hasattr(body, "read") else (body or b"")
        self.sent.append(Sent(method, target, dict(headers or {}), data))

    def getresponse(self) -> FakeResponse:
        answer = self.script.pop(0) if self.script else Answer()
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(answer)

    def close(self) -> None:
        pass


def wired(script: list[Answer | Exception], **settings: Any) -> tuple[S3Lite, FakeConnection]:
    client = S3Lite(make_settings(s3_endpoint_url="http://s3.internal.test:9000", **settings))
    conn = FakeConnection(script)
    client._connection = lambda: conn  # type: ignore[assignment,return-value,method-assign]
    client._backoff = lambda attempt: None  # type: ignore[method-assign]
    return client, conn


def botocore_signature(sent: Sent, client: S3Lite) -> str:
    """What botocore's S3 signer computes for the request as it went on the wire."""
    signed = sent.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {k: v for k, v in sent.headers.items() if k.lower() in signed and k != "Host"}
    request = AWSRequest(
        method=sent.method,
        url=f"http://{sent.headers['Host']}{sent.target}",
        headers=headers,
        data=sent.body,
    )
    request.context["timestamp"] = sent.headers["X-Amz-Date"]
    auth = S3SigV4Auth(
        BotoCredentials(client.creds.access_key, client.creds.secret_key), "s3", client.creds.region
    )
    canonical = auth.canonical_request(request)
    signature: str = auth.signature(auth.string_to_sign(request, canonical), request)
    return signature


def our_signature(sent: Sent) -> str:
    return sent.headers["Authorization"].rsplit("Signature=", 1)[1]


@pytest.fixture
def mp3(tmp_path: Path) -> Path:
    path = tmp_path / "out.mp3"
    path.write_bytes(b"ID3" + bytes(range(256)) * 40)
    return path


def multipart_script(parts: int) -> list[Answer | Exception]:
    created = Answer(
        body=b'<?xml version="1.0"?><InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Bucket>video2mp3</Bucket><Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>"
    )
    etags: list[Answer | Exception] = [
        Answer(headers={"ETag": f'"etag-{n}"'}) for n in range(1, parts + 1)
    ]
    return [created, *etags, Answer(body=b"<CompleteMultipartUploadResult/>")]


# --------------------------------------------------------------------------- signing


def test_every_request_is_signed_as_botocore_signs_it(mp3: Path) -> None:
    # Given a client whose multipart threshold is tiny, so one upload makes every call
    client, conn = wired(multipart_script(3))
    client.single_put_max_bytes = client.part_size = 4000
    # When it uploads in parts, then reads, stats, deletes and puts a small object
    client.upload_file(str(mp3), "outputs/u/é job.mp3", content_type="audio/mpeg")
    client.read_head("uploads/u/a b.mp4", 12)
    client.stat("uploads/u/a b.mp4")
    client.delete("uploads/u/a b.mp4")
    client.single_put_max_bytes = 10**9
    client.upload_file(str(mp3), "outputs/u/job.mp3", content_type="audio/mpeg")
    # Then botocore computes the same signature for each request as sent
    methods = [(s.method, s.target.split("?")[1] if "?" in s.target else "") for s in conn.sent]
    assert methods == [
        ("POST", "uploads="),
        ("PUT", "partNumber=1&uploadId=up-1"),
        ("PUT", "partNumber=2&uploadId=up-1"),
        ("PUT", "partNumber=3&uploadId=up-1"),
        ("POST", "uploadId=up-1"),
        ("GET", ""),
        ("HEAD", ""),
        ("DELETE", ""),
        ("PUT", ""),
    ]
    for sent in conn.sent:
        assert our_signature(sent) == botocore_signature(sent, client), sent.method
        assert sent.headers["Host"] == "s3.internal.test:9000"


def test_put_sends_the_file_with_its_hash_length_and_type(mp3: Path) -> None:
    client, conn = wired([Answer()])

    client.upload_file(str(mp3), "outputs/job.mp3", content_type="audio/mpeg")

    (sent,) = conn.sent
    body = mp3.read_bytes()
    assert sent.target == "/video2mp3/outputs/job.mp3"
    assert sent.body == body
    assert sent.headers["Content-Length"] == str(len(body))
    assert sent.headers["Content-Type"] == "audio/mpeg"
    assert "content-type" in sent.headers["Authorization"]
    assert sent.headers["X-Amz-Content-SHA256"] == hashlib.sha256(body).hexdigest()


def test_multipart_sends_parts_in_order_and_lists_their_etags(mp3: Path) -> None:
    client, conn = wired(multipart_script(3))
    client.single_put_max_bytes = client.part_size = 4000

    client.upload_file(str(mp3), "k", content_type="audio/mpeg")

    parts = [s.body for s in conn.sent if s.method == "PUT"]
    assert b"".join(parts) == mp3.read_bytes()
    assert [len(p) for p in parts] == [4000, 4000, len(mp3.read_bytes()) - 8000]
    complete = conn.sent[-1].body.decode()
    assert complete.index('"etag-1"') < complete.index('"etag-2"') < complete.index('"etag-3"')
    assert "<PartNumber>3</PartNumber>" in complete


# --------------------------------------------------------------------------- failures


def test_connection_errors_and_5xx_are_retried_until_an_answer() -> None:
    client, conn = wired(
        [
            ConnectionResetError("reset"),
            Answer(503, b"<Error><Code>SlowDown</Code></Error>"),
            Answer(206, b"\x00\x00\x00\x18ftypisom"),
        ]
    )

    assert client.read_head("k", 12) == b"\x00\x00\x00\x18ftypisom"
    assert len(conn.sent) == 3


def test_gives_up_after_three_attempts_with_a_storage_error() -> None:
    client, conn = wired([Answer(500), Answer(502), Answer(503)])

    with pytest.raises(StorageError) as caught:
        client.delete("k")

    assert len(conn.sent) == 3
    assert caught.value.retryable and "HTTP 503" in (caught.value.detail or "")


def test_no_answer_at_all_is_a_storage_error() -> None:
    client, conn = wired([ConnectionRefusedError()] * 3)

    with pytest.raises(StorageError, match="unreachable"):
        client.read_head("k", 12)

    assert len(conn.sent) == 3


def test_refusals_are_not_retried() -> None:
    denied = Answer(403, b"<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error>")
    client, conn = wired([denied])

    with pytest.raises(StorageError) as caught:
        client.read_head("k", 12)

    assert len(conn.sent) == 1
    assert "SignatureDoesNotMatch" in (caught.value.detail or "")


def test_missing_objects_read_as_empty_and_stat_as_none() -> None:
    client, _ = wired([Answer(404), Answer(404)])

    assert client.read_head("nope", 12) == b""
    assert client.stat("nope") is None


def test_stat_reports_size_and_type() -> None:
    client, _ = wired([Answer(headers={"Content-Length": "1234", "Content-Type": "video/mp4"})])

    info = client.stat("k")

    assert info is not None and (info.size_bytes, info.content_type) == (1234, "video/mp4")


def test_a_failed_part_aborts_the_multipart_upload(mp3: Path) -> None:
    script = multipart_script(3)
    script[2] = Answer(403, b"<Error><Code>AccessDenied</Code></Error>")
    client, conn = wired(script)
    client.single_put_max_bytes = client.part_size = 4000

    with pytest.raises(StorageError, match="Could not write the result"):
        client.upload_file(str(mp3), "k", content_type="audio/mpeg")

    assert (conn.sent[-1].method, conn.sent[-1].target) == ("DELETE", "/video2mp3/k?uploadId=up-1")


def test_an_error_inside_a_200_complete_aborts_too(mp3: Path) -> None:
    script = multipart_script(3)
    script[-1] = Answer(200, b"<Error><Code>InternalError</Code></Error>")
    client, conn = wired(script)
    client.single_put_max_bytes = client.part_size = 4000

    with pytest.raises(StorageError):
        client.upload_file(str(mp3), "k", content_type="audio/mpeg")

    assert conn.sent[-1].method == "DELETE"


def test_a_missing_local_file_is_a_storage_error(tmp_path: Path) -> None:
    client, conn = wired([])

    with pytest.raises(StorageError):
        client.upload_file(str(tmp_path / "gone.mp3"), "k", content_type="audio/mpeg")

    assert conn.sent == []


# --------------------------------------------------------------------------- bucket


def test_ensure_bucket_creates_a_missing_bucket_and_sets_cors() -> None:
    client, conn = wired([Answer(404), Answer(200), Answer(200)], s3_region="eu-west-1")

    client.ensure_bucket()

    head, create, cors = conn.sent
    assert (head.method, create.method, cors.method) == ("HEAD", "PUT", "PUT")
    assert b"<LocationConstraint>eu-west-1</LocationConstraint>" in create.body
    assert cors.target == "/video2mp3?cors="
    assert b"<AllowedOrigin>*</AllowedOrigin>" in cors.body
    assert "Content-MD5" in cors.headers


def test_ensure_bucket_accepts_a_bucket_created_meanwhile() -> None:
    taken = Answer(409, b"<Error><Code>BucketAlreadyOwnedByYou</Code></Error>")
    client, conn = wired([Answer(404), taken, Answer(200)])

    client.ensure_bucket()

    assert len(conn.sent) == 3


# --------------------------------------------------------------------------- import path


def modules_loaded_by(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after ``statement``."""
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; {statement}; print(' '.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_the_worker_never_imports_boto3_or_alembic() -> None:
    # boto3/botocore cost ~24 MiB of RSS with a client (issue 8): the worker talks to S3
    # through shared.s3lite, and runs Alembic in a child process (shared.migrate).
    heavy = {"boto3", "botocore", "s3transfer", "alembic", "fastapi", "starlette"}

    assert heavy & modules_loaded_by("import worker.__main__") == set()
