"""In-memory stand-ins for shared.storage.Storage and shared.queue.Publisher.

They keep the real classes' public methods and signatures (a unit test checks this) and
raise the same errors, so the API and the worker cannot tell them apart. Each has a
``fail`` flag that makes every call raise, to exercise the unavailable paths.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from shared.errors import QueueError, StorageError
from shared.events import JobEvent
from shared.queue import JobMessage
from shared.storage import ObjectInfo, content_disposition, download_name
from shared.storage_multipart import InProgressUpload, PartInfo

PUBLIC_BASE = "http://s3.public.test/video2mp3"
INTERNAL_BASE = "http://s3.internal.test/video2mp3"


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str | None


@dataclass
class FakeMultipart:
    key: str
    content_type: str
    parts: dict[int, bytes] = field(default_factory=dict)
    initiated: datetime = field(default_factory=lambda: datetime.now(UTC))


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


@dataclass(frozen=True)
class PresignedPut:
    key: str
    headers: dict[str, str]


class FakeStorage:
    """A bucket in a dict. Presigned URLs are fake but parseable, and point at the key."""

    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.presigned_puts: dict[str, PresignedPut] = {}
        self.multipart: dict[str, FakeMultipart] = {}
        self.multipart_keys_done: list[str] = []
        self.fail = False
        self.bucket_ready = False

    def _check(self) -> None:
        if self.fail:
            raise StorageError("Object storage is unreachable.")

    # -------------------------------------------------------------- presigning

    def presign_put(
        self, key: str, *, content_type: str, size_bytes: int, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        self._check()
        headers = {"Content-Type": content_type, "Content-Length": str(size_bytes)}
        url = f"{PUBLIC_BASE}/{quote(key)}?" + urlencode(
            {"X-Amz-Expires": expires_s, "X-Amz-SignedHeaders": "content-length;content-type;host"}
        )
        self.presigned_puts[url] = PresignedPut(key=key, headers=dict(headers))
        return url, headers

    def presign_download(
        self,
        key: str,
        *,
        filename: str,
        expires_s: int,
        extension: str = ".mp3",
        content_type: str = "audio/mpeg",
    ) -> str:
        self._check()
        name = download_name(filename, extension)
        query = urlencode(
            {
                "response-content-disposition": content_disposition(name),
                "response-content-type": content_type,
                "X-Amz-Expires": expires_s,
            }
        )
        return f"{PUBLIC_BASE}/{quote(key)}?{query}"

    def presign_internal_get(self, key: str, *, expires_s: int) -> str:
        self._check()
        return f"{INTERNAL_BASE}/{quote(key)}?" + urlencode({"X-Amz-Expires": expires_s})

    # -------------------------------------------------------------- multipart uploads

    def create_multipart(self, key: str, *, content_type: str) -> str:
        self._check()
        upload_id = f"mpu-{len(self.multipart) + 1}"
        self.multipart[upload_id] = FakeMultipart(key=key, content_type=content_type)
        return upload_id

    def presign_part(
        self, key: str, *, upload_id: str, part_number: int, size_bytes: int, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        self._check()
        query = urlencode(
            {"uploadId": upload_id, "partNumber": part_number, "X-Amz-Expires": expires_s}
        )
        return f"{PUBLIC_BASE}/{quote(key)}?{query}", {"Content-Length": str(size_bytes)}

    def list_parts(self, key: str, *, upload_id: str) -> list[PartInfo] | None:
        self._check()
        upload = self.multipart.get(upload_id)
        if upload is None or upload.key != key:
            return None
        return [PartInfo(n, len(data), _etag(data)) for n, data in sorted(upload.parts.items())]

    def complete_multipart(self, key: str, *, upload_id: str, parts: list[tuple[int, str]]) -> None:
        self._check()
        upload = self.multipart.pop(upload_id)
        data = b"".join(upload.parts[n] for n, _ in parts)
        self.objects[key] = StoredObject(data, upload.content_type)
        self.multipart_keys_done.append(key)

    def abort_multipart(self, key: str, *, upload_id: str) -> None:
        self._check()
        self.multipart.pop(upload_id, None)

    def multipart_uploads(self, prefix: str) -> list[InProgressUpload]:
        self._check()
        return [
            InProgressUpload(u.key, upload_id, u.initiated)
            for upload_id, u in self.multipart.items()
            if u.key.startswith(prefix)
        ]

    # -------------------------------------------------------------- objects

    def stat(self, key: str) -> ObjectInfo | None:
        self._check()
        obj = self.objects.get(key)
        if obj is None:
            return None
        return ObjectInfo(size_bytes=len(obj.data), content_type=obj.content_type)

    def read_head(self, key: str, length: int) -> bytes:
        self._check()
        obj = self.objects.get(key)
        return obj.data[:length] if obj is not None else b""

    def upload_file(self, path: str, key: str, *, content_type: str) -> None:
        self._check()
        self.objects[key] = StoredObject(Path(path).read_bytes(), content_type)

    def download_file(self, key: str, path: str) -> None:
        self._check()
        obj = self.objects.get(key)
        if obj is None:
            raise StorageError("Could not read an object from object storage.")
        Path(path).write_bytes(obj.data)

    def delete(self, key: str) -> None:
        self._check()
        self.objects.pop(key, None)

    def ping(self) -> None:
        self._check()

    def ensure_bucket(self) -> None:
        self._check()
        self.bucket_ready = True

    # -------------------------------------------------------------- test helpers

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store an object directly, as if someone had uploaded it."""
        self.objects[key] = StoredObject(data, content_type)

    def put_presigned(self, url: str, data: bytes, headers: dict[str, str]) -> None:
        """What a client's PUT to a presigned URL does: signed headers must match."""
        grant = self.presigned_puts.get(url)
        if grant is None:
            raise AssertionError(f"no presigned PUT was handed out for {url}")
        if headers != grant.headers:
            raise AssertionError(f"PUT headers {headers} differ from signed {grant.headers}")
        if int(headers["Content-Length"]) != len(data):
            raise AssertionError("Content-Length does not match the body")
        self.objects[grant.key] = StoredObject(data, headers["Content-Type"])

    def put_part(self, url: str, data: bytes) -> str:
        """What a client's PUT to a presigned part URL does; storage's ETag for it."""
        query = self.query_of(url)
        upload = self.multipart[query["uploadId"][0]]
        upload.parts[int(query["partNumber"][0])] = data
        return _etag(data)

    @staticmethod
    def key_of(url: str) -> str:
        """The object key a fake presigned URL points at."""
        return unquote(urlsplit(url).path.split("/", 2)[2])

    @staticmethod
    def query_of(url: str) -> dict[str, list[str]]:
        return parse_qs(urlsplit(url).query)


class FakePublisher:
    """Records published job messages and events instead of sending them to RabbitMQ."""

    def __init__(self) -> None:
        self.messages: list[JobMessage] = []
        self.events: list[JobEvent] = []
        self.routing_keys: list[str | None] = []
        self.fail = False
        self.closed = False

    def publish(self, message: JobMessage, *, routing_key: str | None = None) -> None:
        if self.fail:
            raise QueueError("The job queue is unavailable.")
        self.messages.append(message)
        self.routing_keys.append(routing_key)

    def publish_event(self, event: JobEvent) -> None:
        if self.fail:
            raise QueueError("The job queue is unavailable.")
        self.events.append(event)

    def close_quietly(self) -> None:
        self.closed = True

    @property
    def job_ids(self) -> list[str]:
        return [m.job_id for m in self.messages]
