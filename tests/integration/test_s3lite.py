"""The worker's stdlib S3 client against a real S3 HTTP server (moto's, or V2M_TEST_S3_ENDPOINT).

moto does not check signatures unless IAM is enforced, so the signature tests run on a
second moto server started with authentication on (INITIAL_NO_AUTH_ACTION_COUNT): there
a wrongly signed request is refused exactly as AWS or MinIO would refuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared.errors import StorageError
from shared.s3lite import S3Lite
from tests.integration.conftest import BIN, free_port, port_open, wait_for
from tests.unit.conftest import make_settings

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def boto(endpoint: str, key: str = "testing", secret: str = "testing") -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def lite(endpoint: str, bucket: str, key: str = "testing", secret: str = "testing") -> S3Lite:
    client = S3Lite(
        make_settings(
            s3_endpoint_url=endpoint,
            s3_public_endpoint_url="https://files.example.com",
            s3_bucket=bucket,
            s3_access_key=key,
            s3_secret_key=secret,
        )
    )
    client.backoff_base_s = 0.01
    return client


def empty_bucket(s3: Any, bucket: str) -> None:
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[str]:
    """A fresh bucket, made by our client (ensure_bucket), removed with everything in it."""
    name = f"s3lite-{uuid.uuid4().hex[:10]}"
    lite(s3_endpoint, name).ensure_bucket()
    yield name
    empty_bucket(boto(s3_endpoint), name)


@pytest.fixture
def client(s3_endpoint: str, bucket: str) -> S3Lite:
    return lite(s3_endpoint, bucket)


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            out.write(chunk)
            left -= len(chunk)
    return path


# --------------------------------------------------------------------------- objects


def test_put_stat_read_head_delete_round_trip(
    client: S3Lite, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "a.mp3", 300_000)
    key = "outputs/user-1/Été à la plage+1.mp3"

    client.upload_file(str(source), key, content_type="audio/mpeg")

    stored = boto(s3_endpoint).get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == source.read_bytes()
    assert stored["ContentType"] == "audio/mpeg"
    info = client.stat(key)
    assert info is not None and (info.size_bytes, info.content_type) == (300_000, "audio/mpeg")
    assert client.read_head(key, 12) == source.read_bytes()[:12]
    client.delete(key)
    assert client.stat(key) is None
    assert client.read_head(key, 12) == b""
    client.delete(key)  # deleting what is gone is fine, as in S3


def test_read_head_of_a_short_object_returns_what_there_is(client: S3Lite, tmp_path: Path) -> None:
    client.upload_file(str(random_file(tmp_path / "s", 5)), "short", content_type="video/mp4")

    assert len(client.read_head("short", 12)) == 5


def test_large_files_go_up_in_parts_and_arrive_whole(
    client: S3Lite, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    # Given a client that switches to multipart above 5 MiB, with 5 MiB parts (S3's minimum)
    client.single_put_max_bytes = client.part_size = 5 * MiB
    source = random_file(tmp_path / "big.mp3", 12 * MiB + 5)
    # When it uploads a 12 MiB file
    client.upload_file(str(source), "outputs/big.mp3", content_type="audio/mpeg")
    # Then the object is the file, in three parts, and no upload is left pending
    s3 = boto(s3_endpoint)
    stored = s3.get_object(Bucket=bucket, Key="outputs/big.mp3")
    assert stored["Body"].read() == source.read_bytes()
    assert stored["ContentType"] == "audio/mpeg"
    assert stored["ETag"].strip('"').endswith("-3")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_failed_multipart_upload_is_aborted(
    client: S3Lite, bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.single_put_max_bytes = client.part_size = 5 * MiB
    source = random_file(tmp_path / "big.mp3", 11 * MiB)
    real = client._put_part
    calls: list[int] = []

    def second_part_fails(*args: Any) -> str:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk went away")
        return real(*args)

    monkeypatch.setattr(client, "_put_part", second_part_fails)

    with pytest.raises(StorageError, match="Could not write the result"):
        client.upload_file(str(source), "outputs/big.mp3", content_type="audio/mpeg")

    s3 = boto(s3_endpoint)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


# --------------------------------------------------------------------------- presigned GET


@pytest.fixture
def stored_clip(client: S3Lite, sample: Callable[[str], Path], tmp_path: Path) -> tuple[str, Path]:
    source = sample("mp4_moov_at_end")
    client.upload_file(str(source), "uploads/u/clip à.mp4", content_type="video/mp4")
    return "uploads/u/clip à.mp4", source


def test_presigned_get_is_readable_by_urllib_whole_and_by_range(
    client: S3Lite, stored_clip: tuple[str, Path], s3_endpoint: str
) -> None:
    key, source = stored_clip
    url = client.presign_internal_get(key, expires_s=300)

    assert url.startswith(f"{s3_endpoint}/")  # the internal host, not the public one
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == source.read_bytes()
    ranged = urllib.request.Request(url, headers={"Range": "bytes=4-7"})
    with urllib.request.urlopen(ranged, timeout=30) as resp:
        assert resp.status == 206
        assert resp.read() == source.read_bytes()[4:8]


def test_ffmpeg_reads_the_input_through_a_presigned_url(
    client: S3Lite, stored_clip: tuple[str, Path]
) -> None:
    # moov at the end: ffmpeg must seek with range requests to read this file.
    key, _ = stored_clip
    url = client.presign_internal_get(key, expires_s=300)
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


# --------------------------------------------------------------------------- bucket and errors


def test_ensure_bucket_creates_the_bucket_with_cors_once(
    client: S3Lite, bucket: str, s3_endpoint: str
) -> None:
    client.ensure_bucket()  # already there (the fixture made it): nothing changes

    rules = boto(s3_endpoint).get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["*"]
    assert sorted(rules[0]["AllowedMethods"]) == ["GET", "HEAD", "PUT"]
    client.ping()


def test_a_missing_bucket_is_a_storage_error(s3_endpoint: str, tmp_path: Path) -> None:
    client = lite(s3_endpoint, f"missing-{uuid.uuid4().hex[:8]}")
    source = random_file(tmp_path / "a.mp3", 10)

    with pytest.raises(StorageError):
        client.upload_file(str(source), "k", content_type="audio/mpeg")
    with pytest.raises(StorageError):
        client.ping()


def test_unreachable_storage_is_a_retryable_storage_error() -> None:
    client = lite(f"http://127.0.0.1:{free_port()}", "b")  # nothing listens there

    with pytest.raises(StorageError, match="unreachable") as caught:
        client.read_head("k", 12)

    assert caught.value.retryable


# --------------------------------------------------------------------------- signatures checked


@dataclass(frozen=True)
class AuthS3:
    endpoint: str
    key: str
    secret: str


@pytest.fixture(scope="module")
def auth_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthS3]:
    """A moto server that authenticates every request after the first three (which make
    an IAM user with full access and its access key)."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto-auth") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
    )
    try:
        wait_for(lambda: port_open(port), 30, "moto's S3 server (with auth) to listen")
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="worker")
        key = iam.create_access_key(UserName="worker")["AccessKey"]
        iam.put_user_policy(
            UserName="worker",
            PolicyName="all-s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        yield AuthS3(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_a_server_checking_signatures_accepts_every_call(auth_s3: AuthS3, tmp_path: Path) -> None:
    # Given a server that recomputes each request's SigV4 signature
    bucket = f"auth-{uuid.uuid4().hex[:8]}"
    client = lite(auth_s3.endpoint, bucket, auth_s3.key, auth_s3.secret)
    client.single_put_max_bytes = client.part_size = 5 * MiB
    small = random_file(tmp_path / "small.mp3", 1000)
    big = random_file(tmp_path / "big.mp3", 11 * MiB)
    # When the client makes every call the worker makes (unicode and spaces in keys)
    client.ensure_bucket()
    client.upload_file(str(small), "outputs/é 1.mp3", content_type="audio/mpeg")
    client.upload_file(str(big), "outputs/big.mp3", content_type="audio/mpeg")
    # Then each is accepted
    assert client.read_head("outputs/é 1.mp3", 12) == small.read_bytes()[:12]
    info = client.stat("outputs/big.mp3")
    assert info is not None and info.size_bytes == 11 * MiB
    client.delete("outputs/é 1.mp3")
    client.delete("outputs/big.mp3")
    client.ping()
    empty_bucket(boto(auth_s3.endpoint, auth_s3.key, auth_s3.secret), bucket)


@pytest.mark.parametrize(
    "wrong", [pytest.param("secret", id="wrong-secret"), pytest.param("key", id="unknown-key")]
)
def test_wrong_credentials_are_a_storage_error(auth_s3: AuthS3, tmp_path: Path, wrong: str) -> None:
    bucket = f"auth-{uuid.uuid4().hex[:8]}"
    good = lite(auth_s3.endpoint, bucket, auth_s3.key, auth_s3.secret)
    good.ensure_bucket()
    source = random_file(tmp_path / "a.mp3", 100)
    good.upload_file(str(source), "a.mp3", content_type="audio/mpeg")
    key, secret = (auth_s3.key, "not-the-secret") if wrong == "secret" else ("AKIANOBODY", "x")
    bad = lite(auth_s3.endpoint, bucket, key, secret)

    for call in (
        lambda: bad.upload_file(str(source), "b.mp3", content_type="audio/mpeg"),
        lambda: bad.read_head("a.mp3", 12),
        lambda: bad.delete("a.mp3"),
        bad.ping,
        bad.ensure_bucket,
    ):
        with pytest.raises(StorageError) as caught:
            call()
        assert "HTTP 403" in (caught.value.detail or "")
    assert good.read_head("a.mp3", 3) == source.read_bytes()[:3]
    empty_bucket(boto(auth_s3.endpoint, auth_s3.key, auth_s3.secret), bucket)
