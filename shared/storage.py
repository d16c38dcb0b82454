"""Object storage (any S3 API): the one adapter the API and the worker use.

Two endpoints matter. The API and worker talk to ``s3_endpoint_url``; browsers reach
``s3_public_endpoint_url``. SigV4 signs the host, so URLs handed to browsers are signed for
the public host, and URLs handed to ffmpeg for the internal one.

Two libraries sit behind it, each where it is lighter or the only one that does the job:
- the ``minio`` SDK for the calls a worker makes (stat, ranged read, upload, delete, the
  presigned GET ffmpeg reads): it costs the worker's memory far less than boto3 with its
  service models (figures in docs/PERFORMANCE.md);
- boto3 (``shared.storage_boto``) for browsers' presigned URLs, whose PUT must sign
  Content-Type and Content-Length (the minio SDK signs the host only), and for the
  bucket's CORS rule (the minio SDK has no call for it). It is imported on first use, so
  it loads in the API and the start-up set-up step, never in a worker.

Library errors are translated here into ``StorageError``. The multipart-upload calls
live in ``shared.storage_multipart`` and are mixed in.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from shared.config import Settings
from shared.errors import StorageError
from shared.retention import abort_incomplete_rule, lifecycle_rule
from shared.storage_multipart import (
    _LIBRARY_ERRORS,
    UNREACHABLE,
    MultipartCalls,
    _storage_error,
)

if TYPE_CHECKING:
    from shared.storage_boto import BotoS3

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_KEY_NAME = 120

# The bucket's CORS rule (besides its origins): browsers PUT uploads and GET downloads
# straight to storage.
CORS_RULE: dict[str, Any] = {
    "AllowedMethods": ["PUT", "GET", "HEAD"],
    "AllowedHeaders": ["*"],
    "ExposeHeaders": ["ETag", "Content-Length", "Content-Disposition"],
    "MaxAgeSeconds": 3600,
}


@dataclass(frozen=True)
class ObjectInfo:
    size_bytes: int
    content_type: str | None


def sanitize_filename(filename: str, *, default: str = "file") -> str:
    """A safe object-key segment: ASCII letters, digits, dot, dash, underscore.

    Path separators and control characters never survive; unicode is folded to ASCII
    where it has an equivalent; the result is at most 120 characters and keeps the
    extension.
    """
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".") if "." in base.lstrip(".") else (base, "", "")
    clean_ext = _ascii_segment(ext)[:16]
    clean_stem = _ascii_segment(stem)
    default_stem, _, default_ext = default.partition(".")
    if not clean_stem:
        if not clean_ext:
            return default
        clean_stem = default_stem
    suffix = f".{clean_ext}" if dot and clean_ext else ""
    return clean_stem[: MAX_KEY_NAME - len(suffix)].rstrip("._-") + suffix


def _ascii_segment(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _UNSAFE.sub("_", folded).strip("._-")


def download_name(filename: str, extension: str = ".mp3") -> str:
    """The original stem with a new extension, for Content-Disposition."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = PurePosixPath(base).stem if "." in base.lstrip(".") else base
    stem = "".join(ch for ch in stem if unicodedata.category(ch)[0] != "C").strip()
    return (stem[:200] or "audio") + extension


def content_disposition(filename: str) -> str:
    """RFC 6266 attachment header with an ASCII fallback and the UTF-8 name."""
    fallback = sanitize_filename(filename, default="audio.mp3")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _minio_client(settings: Settings) -> Minio:
    """The SDK's client on the internal endpoint, with boto3's "standard" retry budget
    (3 attempts on connection errors and 5xx) and timeouts instead of the SDK's 5 minutes."""
    endpoint = urlsplit(
        settings.s3_endpoint_url or f"https://s3.{settings.s3_region}.amazonaws.com"
    )
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60),
        maxsize=max(10, settings.worker_concurrency * 2),
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        endpoint.netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=endpoint.scheme == "https",
        # Known region: the SDK never asks the server for the bucket's location.
        region=settings.s3_region,
        http_client=http,
    )


class Storage(MultipartCalls):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = _minio_client(settings)

    @cached_property
    def _boto(self) -> BotoS3:
        from shared.storage_boto import BotoS3

        return BotoS3(self.settings)

    # -------------------------------------------------------------- presigning

    def presign_put(
        self, key: str, *, content_type: str, size_bytes: int, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        """A PUT URL for browsers (public host) and the headers to send with it; both
        headers are signed, so storage refuses a body of another size or type."""
        return self._boto.presign_put(
            key, content_type=content_type, size_bytes=size_bytes, expires_s=expires_s
        )

    def presign_download(
        self,
        key: str,
        *,
        filename: str,
        expires_s: int,
        extension: str = ".mp3",
        content_type: str = "audio/mpeg",
    ) -> str:
        """A GET URL for browsers: public host, attachment named after the original file
        with the output format's extension, served as that format's type."""
        return self._boto.presign_get(
            key,
            expires_s=expires_s,
            content_disposition=content_disposition(download_name(filename, extension)),
            content_type=content_type,
        )

    def presign_internal_get(self, key: str, *, expires_s: int) -> str:
        """A GET URL for ffmpeg inside the deployment (internal host; range requests work)."""
        try:
            return self.client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_s)
            )
        except (ValueError, MinioException) as exc:
            raise StorageError("Could not sign a storage URL.") from exc

    # -------------------------------------------------------------- objects

    def stat(self, key: str) -> ObjectInfo | None:
        """Size and type of an object, or None when it does not exist (AWS answers 403
        rather than 404 to a caller that may not list the bucket)."""
        try:
            obj = self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.response.status in (403, 404):
                return None
            raise _storage_error("Object storage refused a request.", exc) from exc
        except _LIBRARY_ERRORS as exc:
            raise _storage_error(UNREACHABLE, exc) from exc
        return ObjectInfo(size_bytes=int(obj.size or 0), content_type=obj.content_type)

    def read_head(self, key: str, length: int) -> bytes:
        """The first ``length`` bytes of an object (a ranged GET); b"" when it is missing
        or empty.

        A HEAD comes first: its answer is a status alone, which the SDK reads from any
        server, where an error body of a GET must be labelled application/xml for the
        SDK to read it (rclone labels it text/xml).
        """
        info = self.stat(key)
        if info is None or info.size_bytes == 0:
            return b""
        try:
            response = self.client.get_object(self.bucket, key, offset=0, length=length)
            try:
                data: bytes = response.read(length)
            finally:
                response.close()
                response.release_conn()
        except _LIBRARY_ERRORS as exc:
            raise _storage_error(UNREACHABLE, exc) from exc
        return data

    def upload_file(self, path: str, key: str, *, content_type: str) -> None:
        """Store a local file: one PUT when small, 5 MiB parts one after another when
        large (the SDK holds one part in memory at a time)."""
        try:
            self.client.fput_object(
                self.bucket, key, path, content_type=content_type, num_parallel_uploads=1
            )
        except _LIBRARY_ERRORS as exc:
            raise _storage_error("Could not write the result to object storage.", exc) from exc

    def download_file(self, key: str, path: str) -> None:
        """Fetch an object to a local file (a split job's segments, to join them)."""
        try:
            self.client.fget_object(self.bucket, key, path)
        except _LIBRARY_ERRORS as exc:
            raise _storage_error("Could not read an object from object storage.", exc) from exc

    def delete(self, key: str) -> None:
        """Remove an object; removing one that is gone is fine, as in S3."""
        try:
            self.client.remove_object(self.bucket, key)
        except _LIBRARY_ERRORS as exc:
            raise _storage_error("Could not delete an object.", exc) from exc

    def ping(self) -> None:
        """Raise StorageError unless storage answers and the bucket exists."""
        message = "Object storage is unreachable or the bucket is missing."
        try:
            exists = self.client.bucket_exists(self.bucket)
        except _LIBRARY_ERRORS as exc:
            raise _storage_error(message, exc) from exc
        if not exists:
            raise StorageError(message, detail=f"no bucket {self.bucket!r}")

    def ensure_bucket(self) -> None:
        """Create the bucket if missing and, when ``s3_cors_origins`` lists origins,
        allow browsers to PUT and GET from them (the bucket's CORS rule). With no origins
        the bucket's CORS is left alone: servers such as ``rclone serve s3`` and MinIO set
        CORS for the whole server instead. A lifecycle rule expires MP3s after
        ``output_retention_days``, and another aborts multipart uploads left unfinished,
        where the server has lifecycle rules (shared/retention.py)."""
        cors = (
            {"AllowedOrigins": self.settings.s3_cors_origins, **CORS_RULE}
            if self.settings.s3_cors_origins
            else None
        )
        self._boto.ensure_bucket(
            cors, [lifecycle_rule(self.settings), abort_incomplete_rule(self.settings)]
        )
