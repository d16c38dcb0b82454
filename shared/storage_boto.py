"""The boto3 part of ``shared.storage.Storage``: browsers' presigned URLs and bucket set-up.

boto3's client presigner signs Content-Type and Content-Length into a PUT URL when they
are given as parameters, so storage refuses a body of another size or type; it also
sets a bucket's CORS rule. ``Storage`` imports this module on first use only: it loads
in the API and the start-up set-up step, never in a worker (shared/storage.py says why).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.config import Settings
from shared.errors import StorageError
from shared.storage_multipart import PartInfo

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import CORSRuleTypeDef, LifecycleRuleTypeDef

log = structlog.get_logger("storage")
# What servers answer to a bucket setting they do not have: NotImplemented (MinIO for
# CORS), or, from servers that ignore the query string (`rclone serve s3`), the answer to
# a CreateBucket of a bucket that exists.
NOT_IMPLEMENTED = frozenset(
    {"NotImplemented", "501", "BucketAlreadyExists", "BucketAlreadyOwnedByYou"}
)
_HINTS = {
    "cors": "set CORS on the server itself (rclone serve s3 --allow-origin, MinIO's "
    "MINIO_API_CORS_ALLOW_ORIGIN) so browsers may PUT uploads and GET MP3s",
    "lifecycle": "the worker's reaper deletes expired MP3s (V2M_OUTPUT_RETENTION_DAYS) "
    "and aborts abandoned multipart uploads (V2M_MULTIPART_EXPIRES_S)",
}


def make_client(settings: Settings, endpoint: str | None) -> S3Client:
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
            # Checksums only where an operation requires them: S3-compatible servers
            # differ in what they support (rclone sends the whole object's checksum
            # with a ranged GET).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    return client


class BotoS3:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = make_client(settings, settings.s3_endpoint_url)
        if settings.public_endpoint == settings.s3_endpoint_url:
            self.public_client = self.client
        else:
            self.public_client = make_client(settings, settings.public_endpoint)

    def presign_put(
        self, key: str, *, content_type: str, size_bytes: int, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        url = self._presign(
            "put_object",
            {"Key": key, "ContentType": content_type, "ContentLength": size_bytes},
            expires_s,
        )
        return url, {"Content-Type": content_type, "Content-Length": str(size_bytes)}

    def presign_get(
        self, key: str, *, expires_s: int, content_disposition: str, content_type: str
    ) -> str:
        return self._presign(
            "get_object",
            {
                "Key": key,
                "ResponseContentDisposition": content_disposition,
                "ResponseContentType": content_type,
                # Some S3 servers (rclone's among them) answer a ranged GET with 200 and
                # the range's bytes; a browser that cached that for the page's player
                # would hand the same partial body to the download link.
                "ResponseCacheControl": "no-store",
            },
            expires_s,
        )

    # ---------------------------------------------------------- multipart uploads

    def create_multipart(self, key: str, *, content_type: str) -> str:
        """Begin a multipart upload of ``key``; storage's upload id."""
        try:
            answer = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise _error("Could not begin a multipart upload.", exc) from exc
        return answer["UploadId"]

    def presign_part(
        self, key: str, *, upload_id: str, part_number: int, size_bytes: int, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        """An UploadPart URL for browsers with the part's size signed."""
        url = self._presign(
            "upload_part",
            {
                "Key": key,
                "UploadId": upload_id,
                "PartNumber": part_number,
                "ContentLength": size_bytes,
            },
            expires_s,
        )
        return url, {"Content-Length": str(size_bytes)}

    def list_parts(self, key: str, *, upload_id: str) -> list[PartInfo] | None:
        """The parts storage holds (ListParts, every page), or None when storage has no
        such upload (aborted, completed, or never begun)."""
        parts: list[PartInfo] = []
        marker = 0
        try:
            while True:
                page = self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
                parts.extend(
                    PartInfo(p["PartNumber"], p["Size"], p["ETag"]) for p in page.get("Parts", [])
                )
                if not page.get("IsTruncated") or not parts or parts[-1].number <= marker:
                    return parts
                marker = parts[-1].number
        except ClientError as exc:
            if _code(exc) in ("NoSuchUpload", "404") or _status(exc) == 404:
                return None
            raise _error("Could not list an upload's parts.", exc) from exc
        except BotoCoreError as exc:
            raise _error("Could not list an upload's parts.", exc) from exc

    def complete_multipart(self, key: str, *, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Join ``parts`` (number, ETag) into the object."""
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        except (BotoCoreError, ClientError) as exc:
            raise _error("Could not complete a multipart upload.", exc) from exc

    def _presign(self, operation: str, params: dict[str, Any], expires_s: int) -> str:
        try:
            url: str = self.public_client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires_s
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("Could not sign a storage URL.") from exc
        return url

    def ensure_bucket(
        self, cors_rule: dict[str, Any] | None, lifecycle_rules: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Create the bucket if missing (a bucket made meanwhile by another process is
        fine), then set ``cors_rule`` and ``lifecycle_rules`` on it when given.

        A server without such a bucket setting (``rclone serve s3`` has neither; MinIO
        sets CORS for the whole server) refuses it (``NOT_IMPLEMENTED``): that is logged
        and set-up goes on, since the server's own CORS options and the reaper do the
        same work.
        """
        try:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _status(exc) != 404 and _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                self._create_bucket()
            if cors_rule is not None:
                with _unless_not_implemented("cors", self.bucket):
                    self.client.put_bucket_cors(
                        Bucket=self.bucket,
                        CORSConfiguration={"CORSRules": [cast("CORSRuleTypeDef", cors_rule)]},
                    )
            if lifecycle_rules:
                with _unless_not_implemented("lifecycle", self.bucket):
                    self._put_lifecycle_rules(lifecycle_rules)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"Could not prepare bucket {self.bucket!r}.") from exc

    def _put_lifecycle_rules(self, rules: Sequence[dict[str, Any]]) -> None:
        """Set ``rules`` among the bucket's lifecycle rules, replacing rules of the same
        IDs and keeping the others (a put replaces the bucket's whole configuration)."""
        ours = {rule["ID"] for rule in rules}
        try:
            current = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
            others = [r for r in current.get("Rules", []) if r.get("ID") not in ours]
        except ClientError as exc:
            if _code(exc) != "NoSuchLifecycleConfiguration":
                raise
            others = []
        self.client.put_bucket_lifecycle_configuration(
            Bucket=self.bucket,
            LifecycleConfiguration={
                "Rules": [*others, *(cast("LifecycleRuleTypeDef", r) for r in rules)]
            },
        )

    def _create_bucket(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.settings.s3_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise


def _error(message: str, exc: BotoCoreError | ClientError) -> StorageError:
    detail = f"{_status(exc)} {_code(exc)}" if isinstance(exc, ClientError) else str(exc)
    return StorageError(message, detail=detail[:500])


@contextmanager
def _unless_not_implemented(setting: str, bucket: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        if _code(exc) not in NOT_IMPLEMENTED and _status(exc) != 501:
            raise
        # Without bucket CORS, browsers are refused unless the server allows them itself:
        # a warning. Without lifecycle rules the reaper does the same work: information.
        report = log.warning if setting == "cors" else log.info
        report(
            "bucket_setting_not_supported",
            setting=setting,
            bucket=bucket,
            answer=_code(exc) or _status(exc),
            hint=_HINTS[setting],
        )


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
