"""Object storage (S3 / MinIO) adapter: presigning, stat, upload, bucket set-up.

Two endpoints matter. The API and worker talk to ``s3_endpoint_url``; browsers reach
``s3_public_endpoint_url``. SigV4 signs the host, so URLs handed to clients are signed for
the public host, and URLs handed to ffmpeg for the internal one.

PUT URLs (Content-Type and Content-Length signed) and ffmpeg's GET URLs are signed by
``shared.s3lite.presign_url``, a stdlib SigV4 query signer with the day's signing key
cached (about 35 µs a URL against 60 µs for botocore's ``S3SigV4QueryAuth`` and 330 µs
for the client presigner, which runs the whole request pipeline; tests check its URLs
are botocore's); see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.config import Settings
from shared.errors import StorageError
from shared.s3lite import CORS_RULE, ObjectInfo, presign_url
from shared.s3lite import Credentials as SigV4Credentials

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import CORSRuleTypeDef

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_KEY_NAME = 120
# Results up to this size go up in one PUT; larger ones in parts (boto3's transfer manager,
# which spins up threads and costs a few round trips more: worth it only for big files).
SINGLE_PUT_MAX_BYTES = 64 * 1024 * 1024


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


def _client(settings: Settings, endpoint: str | None) -> S3Client:
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )
    return client


class Storage:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = _client(settings, settings.s3_endpoint_url)
        if settings.public_endpoint == settings.s3_endpoint_url:
            self.public_client = self.client
        else:
            self.public_client = _client(settings, settings.public_endpoint)
        self._sigv4 = SigV4Credentials(
            settings.s3_access_key, settings.s3_secret_key, settings.s3_region
        )
        public = settings.public_endpoint or f"https://s3.{settings.s3_region}.amazonaws.com"
        self._public_base = f"{public.rstrip('/')}/{quote(self.bucket)}"
        internal = settings.s3_endpoint_url or f"https://s3.{settings.s3_region}.amazonaws.com"
        self._internal_base = f"{internal.rstrip('/')}/{quote(self.bucket)}"

    # -------------------------------------------------------------- presigning

    def presign_put(
        self, key: str, *, content_type: str, size_bytes: int, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        headers = {"Content-Type": content_type, "Content-Length": str(size_bytes)}
        return self._sign("PUT", f"{self._public_base}/{quote(key)}", headers, expires_s), headers

    def _sign(self, method: str, url: str, headers: dict[str, str], expires_s: int) -> str:
        # The stdlib signer the worker uses (same URL as botocore's S3SigV4QueryAuth,
        # checked in tests/unit/test_s3lite.py), with the day's signing key cached: about
        # half the cost per URL on the upload and job routes.
        return presign_url(self._sigv4, method, url, expires_s=expires_s, headers=headers)

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
        return self._presign_get(
            self.public_client,
            key,
            expires_s,
            ResponseContentDisposition=content_disposition(download_name(filename, extension)),
            ResponseContentType=content_type,
        )

    def presign_internal_get(self, key: str, *, expires_s: int) -> str:
        """A GET URL for ffmpeg inside the deployment (internal host, range requests work).

        Signed with the same direct SigV4 signer as PUT URLs: one per job, on the worker's
        hot path, where the client presigner's request pipeline costs about twice as much.
        """
        return self._sign("GET", f"{self._internal_base}/{quote(key)}", {}, expires_s)

    def _presign_get(self, client: S3Client, key: str, expires_s: int, **extra: str) -> str:
        try:
            return client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key, **extra},
                ExpiresIn=expires_s,
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("Could not sign a storage URL.") from exc

    # -------------------------------------------------------------- objects

    def stat(self, key: str) -> ObjectInfo | None:
        """Size and type of an object, or None when it does not exist."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) in (404, 403) or _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError("Object storage refused a request.") from exc
        except BotoCoreError as exc:
            raise StorageError("Object storage is unreachable.") from exc
        return ObjectInfo(
            size_bytes=int(head["ContentLength"]), content_type=head.get("ContentType")
        )

    def read_head(self, key: str, length: int) -> bytes:
        """The first ``length`` bytes of an object (a ranged GET)."""
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )["Body"]
            data: bytes = body.read(length)
            return data
        except ClientError as exc:
            if _status(exc) in (404, 416):
                return b""
            raise StorageError("Object storage refused a request.") from exc
        except BotoCoreError as exc:
            raise StorageError("Object storage is unreachable.") from exc

    def upload_file(self, path: str, key: str, *, content_type: str) -> None:
        """Store a local file: one PUT when small (the usual MP3), multipart when large."""
        try:
            if os.path.getsize(path) <= SINGLE_PUT_MAX_BYTES:
                with open(path, "rb") as body:
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
                    )
            else:
                self.client.upload_file(
                    path, self.bucket, key, ExtraArgs={"ContentType": content_type}
                )
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError("Could not write the result to object storage.") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("Could not delete an object.") from exc

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("Object storage is unreachable or the bucket is missing.") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if missing and allow browsers to PUT to it (CORS)."""
        try:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _status(exc) != 404 and _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                kwargs: dict[str, Any] = {"Bucket": self.bucket}
                if self.settings.s3_region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {
                        "LocationConstraint": self.settings.s3_region
                    }
                try:
                    self.client.create_bucket(**kwargs)
                except ClientError as create_exc:
                    if _code(create_exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            if self.settings.s3_cors_origins:
                self.client.put_bucket_cors(
                    Bucket=self.bucket,
                    CORSConfiguration={
                        "CORSRules": [
                            cast(
                                "CORSRuleTypeDef",
                                {"AllowedOrigins": self.settings.s3_cors_origins, **CORS_RULE},
                            )
                        ]
                    },
                )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"Could not prepare bucket {self.bucket!r}.") from exc


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
