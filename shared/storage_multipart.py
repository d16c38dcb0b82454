"""The multipart-upload calls of ``shared.storage.Storage``, and the SDK's error mapping.

Begun, presigned, listed and completed through boto3 (the API's calls: a part URL must
sign the part's size); aborted and listed through the minio SDK's own multipart calls,
which the reaper in a worker uses (the SDK exposes them with a leading underscore: its
``put_object`` is built on them), so a worker never loads boto3.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from shared.errors import StorageError

if TYPE_CHECKING:
    from shared.storage_boto import BotoS3

UNREACHABLE = "Object storage is unreachable."
# What the minio SDK and the HTTP stack under it raise: S3Error (a refusal), other
# MinioException (an answer the SDK could not read), urllib3's and socket errors.
_LIBRARY_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)
_NO_DELIMITER = "|"  # a character no object key of ours contains (see multipart_uploads)


@dataclass(frozen=True)
class PartInfo:
    number: int
    size_bytes: int
    etag: str


@dataclass(frozen=True)
class InProgressUpload:
    key: str
    upload_id: str
    initiated: datetime | None


def _storage_error(message: str, exc: Exception) -> StorageError:
    """``exc`` from the SDK or its HTTP stack as a StorageError; the detail (operators'
    logs only) says what the server answered."""
    if isinstance(exc, S3Error):
        return StorageError(message, detail=f"HTTP {exc.response.status} {exc.code}")
    return StorageError(message, detail=f"{type(exc).__name__}: {exc}"[:500])


class MultipartCalls:
    """Mixed into ``Storage``, which provides the SDK client, the bucket and boto3."""

    bucket: str
    client: Minio

    @property
    def _boto(self) -> BotoS3:
        raise NotImplementedError

    def create_multipart(self, key: str, *, content_type: str) -> str:
        return self._boto.create_multipart(key, content_type=content_type)

    def presign_part(
        self, key: str, *, upload_id: str, part_number: int, size_bytes: int, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        return self._boto.presign_part(
            key,
            upload_id=upload_id,
            part_number=part_number,
            size_bytes=size_bytes,
            expires_s=expires_s,
        )

    def list_parts(self, key: str, *, upload_id: str) -> list[PartInfo] | None:
        return self._boto.list_parts(key, upload_id=upload_id)

    def complete_multipart(self, key: str, *, upload_id: str, parts: list[tuple[int, str]]) -> None:
        self._boto.complete_multipart(key, upload_id=upload_id, parts=parts)

    def abort_multipart(self, key: str, *, upload_id: str) -> None:
        """Abort an upload and drop its parts; one storage no longer has is fine."""
        try:
            self.client._abort_multipart_upload(self.bucket, key, upload_id)
        except S3Error as exc:
            if exc.code == "NoSuchUpload" or exc.response.status == 404:
                return
            raise _storage_error("Could not abort a multipart upload.", exc) from exc
        except _LIBRARY_ERRORS as exc:
            raise _storage_error(UNREACHABLE, exc) from exc

    def multipart_uploads(self, prefix: str) -> list[InProgressUpload]:
        """Multipart uploads in progress under ``prefix`` (the first 1,000).

        The SDK always sends a ``delimiter``, empty when none is given, and ``rclone serve
        s3`` takes an empty one as a delimiter (it answers with common prefixes only). So
        the listing names one that no key of ours contains (``sanitize_filename`` and ids
        never make it): every upload is listed on every server."""
        try:
            result = self.client._list_multipart_uploads(
                self.bucket, prefix=prefix, delimiter=_NO_DELIMITER
            )
        except _LIBRARY_ERRORS as exc:
            raise _storage_error(UNREACHABLE, exc) from exc
        return [
            InProgressUpload(u.object_name, u.upload_id, u.initiated_time)
            for u in result.uploads
            if u.upload_id
        ]
