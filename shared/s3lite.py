"""A small S3 client for the worker: AWS Signature V4 over http.client, standard library only.

The worker needs a handful of S3 calls: a presigned GET for ffmpeg, a ranged GET of an
input's first bytes, PUT (multipart for large results), DELETE, HEAD and, at start-up,
bucket creation. boto3 and botocore cost the worker about 24 MiB of RSS once a client
has loaded S3's service model (issue 8; docs/ARCHITECTURE.md, "The worker's memory");
this module does those calls in a few hundred lines and keeps boto3 off the worker's
import path. The API keeps ``shared.storage.Storage`` (boto3): it needs the client presigner and
the rest of S3's surface.

Same settings and addressing as ``Storage``: path-style URLs (``http://host/bucket/key``)
on ``s3_endpoint_url``, the endpoint the deployment reaches storage at. Presigned URLs
made here are for ffmpeg inside the deployment, so they are signed for that host too;
browsers' URLs come from the API's ``Storage`` and the public endpoint.

Failures are translated at this edge into ``StorageError`` with the same messages
``Storage`` uses. Like boto3's "standard" retry mode, connection errors, 5xx, 429 and
S3's SlowDown/RequestTimeout are retried (3 attempts in all, jittered exponential
backoff). Each thread keeps one keep-alive connection.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.client
import os
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from shared.config import Settings
from shared.errors import StorageError

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
MiB = 1024 * 1024
# Results up to this size go up in one PUT (as Storage does); larger ones in parts.
SINGLE_PUT_MAX_BYTES = 64 * MiB
PART_SIZE = 16 * MiB
MAX_PARTS = 10_000
_RETRY_STATUS = {429, 500, 502, 503, 504}
_RETRY_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"}
_HASH_CHUNK = 1 * MiB


class WorkerStorage(Protocol):
    """What the worker asks of object storage; ``S3Lite`` and ``Storage`` both fit."""

    def presign_internal_get(self, key: str, *, expires_s: int) -> str: ...

    def read_head(self, key: str, length: int) -> bytes: ...

    def upload_file(self, path: str, key: str, *, content_type: str) -> None: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class ObjectInfo:
    size_bytes: int
    content_type: str | None


# The bucket's CORS rule (besides its origins), set by Storage and S3Lite alike: browsers
# PUT uploads and GET downloads straight to storage.
CORS_RULE: dict[str, Any] = {
    "AllowedMethods": ["PUT", "GET", "HEAD"],
    "AllowedHeaders": ["*"],
    "ExposeHeaders": ["ETag", "Content-Length", "Content-Disposition"],
    "MaxAgeSeconds": 3600,
}


# --------------------------------------------------------------------------- SigV4


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str
    service: str = "s3"


@functools.lru_cache(maxsize=4096)
def _uri_encode(text: str) -> str:
    """AWS's UriEncode for query names and values: everything but A-Z a-z 0-9 - _ . ~

    Memoised: a presigned URL's names and most of its values (algorithm, credential,
    expiry, signed headers) are the same from one URL to the next."""
    return quote(text, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    pairs = sorted((_uri_encode(k), _uri_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


_clock = time.time  # tests freeze it


def amz_date(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(_clock() if now is None else now))


@functools.lru_cache(maxsize=8)
def _signing_key(creds: Credentials, date: str) -> bytes:
    """The day's key (four HMACs): the same for every request of a day, so cached."""
    key = ("AWS4" + creds.secret_key).encode()
    for part in (date, creds.region, creds.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(
    creds: Credentials,
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_hash: str,
    timestamp: str,
) -> tuple[str, str]:
    """(signed header names, signature) of a request. ``path`` is already URI-encoded
    (S3 does not encode it twice); every header given is signed."""
    return _signature(
        creds,
        method=method,
        path=path,
        query=canonical_query(query),
        headers=headers,
        payload_hash=payload_hash,
        timestamp=timestamp,
    )


def _signature(
    creds: Credentials,
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload_hash: str,
    timestamp: str,
) -> tuple[str, str]:
    """`signature` of a query already in canonical form."""
    canon = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    signed = ";".join(sorted(canon))
    canonical_request = "\n".join(
        [
            method,
            path or "/",
            query,
            "".join(f"{name}:{canon[name]}\n" for name in sorted(canon)),
            signed,
            payload_hash,
        ]
    )
    date = timestamp[:8]
    scope = f"{date}/{creds.region}/{creds.service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    sig = hmac.new(_signing_key(creds, date), string_to_sign.encode(), hashlib.sha256)
    return signed, sig.hexdigest()


def _host(scheme: str, netloc: str) -> str:
    """The Host header as botocore signs it: without the scheme's default port."""
    default = ":443" if scheme == "https" else ":80"
    return netloc[: -len(default)] if netloc.endswith(default) else netloc


def presign_url(
    creds: Credentials,
    method: str,
    url: str,
    *,
    expires_s: int,
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
) -> str:
    """A query-authenticated URL (``X-Amz-Signature``), signing ``host`` and ``headers``."""
    parts = urlsplit(url)
    query: dict[str, str] = {}
    for item in filter(None, parts.query.split("&")):
        name, _, value = item.partition("=")
        query[unquote(name)] = unquote(value)
    timestamp = amz_date(now)
    signed_headers = {"host": _host(parts.scheme, parts.netloc), **(headers or {})}
    query.update(
        {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{creds.access_key}/{timestamp[:8]}/{creds.region}/{creds.service}/aws4_request",
            "X-Amz-Date": timestamp,
            "X-Amz-Expires": str(expires_s),
            "X-Amz-SignedHeaders": ";".join(sorted(h.lower() for h in signed_headers)),
        }
    )
    canonical = canonical_query(query)  # signed, then sent as it is
    _, sig = _signature(
        creds,
        method=method,
        path=parts.path,
        query=canonical,
        headers=signed_headers,
        payload_hash=UNSIGNED_PAYLOAD,
        timestamp=timestamp,
    )
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{canonical}&X-Amz-Signature={sig}"


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class _FilePart:
    """A byte range of a local file, opened afresh for each attempt."""

    path: str
    offset: int
    length: int

    @contextmanager
    def open(self) -> Iterator[_Slice]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            yield _Slice(handle, self.length)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.open() as body:
            while chunk := body.read(_HASH_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()


class _Slice:
    """A file object that ends after ``length`` bytes (what http.client streams from)."""

    def __init__(self, handle: IO[bytes], length: int) -> None:
        self._handle = handle
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(size)
        self._left -= len(data)
        return data


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        return _xml_text(self.body, "Code") if self.body else ""


class _S3Failure(Exception):
    """An answer we did not want (after retries); translated to StorageError by callers."""

    def __init__(self, method: str, path: str, response: _Response) -> None:
        self.status = response.status
        self.code = response.error_code()
        message = _xml_text(response.body, "Message") if response.body else ""
        super().__init__(f"{method} {path}: HTTP {self.status} {self.code} {message}".strip())


class _Unreachable(Exception):
    """No HTTP answer at all (refused, reset, timed out) after retries."""


def _xml_text(body: bytes, name: str) -> str:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return ""
    for element in root.iter():
        if element.tag.rpartition("}")[2] == name:
            return element.text or ""
    return ""


def _xml_root_name(body: bytes) -> str:
    try:
        return ET.fromstring(body).tag.rpartition("}")[2]
    except ET.ParseError:
        return ""


class S3Lite:
    """The worker's S3 client: the calls the worker makes, signed with SigV4 by hand."""

    attempts = 3
    backoff_base_s = 0.5
    backoff_max_s = 20.0
    single_put_max_bytes = SINGLE_PUT_MAX_BYTES
    part_size = PART_SIZE

    def __init__(
        self, settings: Settings, *, connect_timeout_s: float = 5, read_timeout_s: float = 60
    ) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.creds = Credentials(settings.s3_access_key, settings.s3_secret_key, settings.s3_region)
        endpoint = (
            settings.s3_endpoint_url or f"https://s3.{settings.s3_region}.amazonaws.com"
        ).rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) S3 endpoint: {endpoint!r}")
        self._https = parts.scheme == "https"
        self._hostname = parts.hostname
        self._port = parts.port
        self._host = _host(parts.scheme, parts.netloc)
        self._bucket_path = f"{parts.path}/{quote(self.bucket)}"
        self._internal_base = f"{endpoint}/{quote(self.bucket)}"
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._local = threading.local()

    # -------------------------------------------------------------- presigning

    def presign_internal_get(self, key: str, *, expires_s: int) -> str:
        """A GET URL for ffmpeg inside the deployment (internal host, range requests work)."""
        return presign_url(
            self.creds, "GET", f"{self._internal_base}/{quote(key)}", expires_s=expires_s
        )

    # -------------------------------------------------------------- objects

    def stat(self, key: str) -> ObjectInfo | None:
        """Size and type of an object, or None when it does not exist."""
        try:
            resp = self._call("HEAD", self._key_path(key), ok=(200, 403, 404))
        except _S3Failure as exc:
            raise StorageError("Object storage refused a request.", detail=str(exc)) from exc
        except _Unreachable as exc:
            raise StorageError("Object storage is unreachable.", detail=str(exc)) from exc
        if resp.status != 200:
            return None
        return ObjectInfo(
            size_bytes=int(resp.headers.get("content-length", "0")),
            content_type=resp.headers.get("content-type"),
        )

    def read_head(self, key: str, length: int) -> bytes:
        """The first ``length`` bytes of an object (a ranged GET); b"" when it is missing."""
        try:
            resp = self._call(
                "GET",
                self._key_path(key),
                headers={"Range": f"bytes=0-{length - 1}"},
                ok=(200, 206, 404, 416),
                max_body=length,
            )
        except _S3Failure as exc:
            raise StorageError("Object storage refused a request.", detail=str(exc)) from exc
        except _Unreachable as exc:
            raise StorageError("Object storage is unreachable.", detail=str(exc)) from exc
        return resp.body[:length] if resp.status in (200, 206) else b""

    def upload_file(self, path: str, key: str, *, content_type: str) -> None:
        """Store a local file: one PUT when small (the usual MP3), multipart when large."""
        try:
            size = os.path.getsize(path)
            if size <= self.single_put_max_bytes:
                self._put_part(self._key_path(key), {}, _FilePart(path, 0, size), content_type)
            else:
                self._multipart(path, key, size, content_type)
        except (_S3Failure, _Unreachable, OSError) as exc:
            raise StorageError(
                "Could not write the result to object storage.", detail=str(exc)
            ) from exc

    def delete(self, key: str) -> None:
        try:
            self._call("DELETE", self._key_path(key), ok=(200, 204, 404))
        except (_S3Failure, _Unreachable) as exc:
            raise StorageError("Could not delete an object.", detail=str(exc)) from exc

    # -------------------------------------------------------------- bucket

    def ping(self) -> None:
        try:
            self._call("HEAD", self._bucket_path)
        except (_S3Failure, _Unreachable) as exc:
            raise StorageError(
                "Object storage is unreachable or the bucket is missing.", detail=str(exc)
            ) from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if missing and allow browsers to PUT to it (CORS), as Storage does."""
        try:
            if self._call("HEAD", self._bucket_path, ok=(200, 404)).status == 404:
                body = b""
                if self.settings.s3_region != "us-east-1":
                    config = ET.Element("CreateBucketConfiguration", xmlns=S3_XMLNS)
                    ET.SubElement(config, "LocationConstraint").text = self.settings.s3_region
                    body = ET.tostring(config)
                resp = self._call("PUT", self._bucket_path, body=body, ok=(200, 409))
                code = resp.error_code()
                if resp.status == 409 and code not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise _S3Failure("PUT", self._bucket_path, resp)
            if self.settings.s3_cors_origins:
                body = _cors_xml(self.settings.s3_cors_origins)
                md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
                self._call(
                    "PUT",
                    self._bucket_path,
                    query={"cors": ""},
                    headers={"Content-MD5": md5, "Content-Type": "application/xml"},
                    body=body,
                )
        except (_S3Failure, _Unreachable) as exc:
            raise StorageError(
                f"Could not prepare bucket {self.bucket!r}.", detail=str(exc)
            ) from exc

    # -------------------------------------------------------------- multipart

    def _multipart(self, path: str, key: str, size: int, content_type: str) -> None:
        object_path = self._key_path(key)
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        created = self._call(
            "POST", object_path, query={"uploads": ""}, headers={"Content-Type": content_type}
        )
        upload_id = _xml_text(created.body, "UploadId")
        if not upload_id:
            raise _S3Failure("POST", object_path, created)
        try:
            etags = []
            for number, offset in enumerate(range(0, size, part_size), start=1):
                part = _FilePart(path, offset, min(part_size, size - offset))
                query = {"partNumber": str(number), "uploadId": upload_id}
                etags.append(self._put_part(object_path, query, part, None))
            done = ET.Element("CompleteMultipartUpload", xmlns=S3_XMLNS)
            for number, etag in enumerate(etags, start=1):
                item = ET.SubElement(done, "Part")
                ET.SubElement(item, "PartNumber").text = str(number)
                ET.SubElement(item, "ETag").text = etag
            resp = self._call(
                "POST",
                object_path,
                query={"uploadId": upload_id},
                headers={"Content-Type": "application/xml"},
                body=ET.tostring(done),
            )
            # CompleteMultipartUpload can fail after a 200, with an <Error> body.
            if _xml_root_name(resp.body) == "Error":
                raise _S3Failure("POST", object_path, resp)
        except BaseException:
            with suppress(_S3Failure, _Unreachable):
                self._call("DELETE", object_path, query={"uploadId": upload_id}, ok=(204, 200, 404))
            raise

    def _put_part(
        self, path: str, query: dict[str, str], part: _FilePart, content_type: str | None
    ) -> str:
        """PUT a file range (an object, or one part of a multipart upload); its ETag."""
        headers = {"Content-Type": content_type} if content_type else {}
        # Over plain HTTP the body's SHA-256 is signed (as botocore does); TLS protects it otherwise.
        payload_hash = UNSIGNED_PAYLOAD if self._https else part.sha256()
        resp = self._call(
            "PUT", path, query=query, headers=headers, body=part, payload_hash=payload_hash
        )
        return resp.headers.get("etag", "")

    # -------------------------------------------------------------- transport

    def _key_path(self, key: str) -> str:
        return f"{self._bucket_path}/{quote(key)}"

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(
                self._hostname, self._port, timeout=self._connect_timeout_s, blocksize=64 * 1024
            )
            self._local.conn = conn
        if conn.sock is None:
            conn.connect()  # connect_timeout_s applies to connecting only
            assert conn.sock is not None
            conn.sock.settimeout(self._read_timeout_s)
            self._local.used = False
        return conn

    def _drop_connection(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._drop_connection()

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | _FilePart = b"",
        payload_hash: str | None = None,
        ok: tuple[int, ...] = (200,),
        max_body: int | None = None,
    ) -> _Response:
        """One S3 request, retried on connection errors and 5xx; _S3Failure if not ``ok``."""
        query = query or {}
        if payload_hash is None:
            payload_hash = (
                hashlib.sha256(body).hexdigest() if isinstance(body, bytes) else UNSIGNED_PAYLOAD
            )
        target = f"{path}?{canonical_query(query)}" if query else path
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            reused = False
            try:
                conn = self._connection()
                reused = bool(getattr(self._local, "used", False))
                resp = self._send(
                    conn, method, path, target, query, headers, body, payload_hash, max_body
                )
                self._local.used = True
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if last:
                    raise _Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
                # A keep-alive connection the server closed while idle: retry at once.
                if not reused:
                    self._backoff(attempt)
                continue
            if resp.status in ok:
                return resp
            retryable = resp.status in _RETRY_STATUS or resp.error_code() in _RETRY_CODES
            if not retryable or last:
                raise _S3Failure(method, path, resp)
            self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        target: str,
        query: dict[str, str],
        headers: dict[str, str] | None,
        body: bytes | _FilePart,
        payload_hash: str,
        max_body: int | None,
    ) -> _Response:
        timestamp = amz_date()
        send = {
            "Host": self._host,
            "X-Amz-Date": timestamp,
            "X-Amz-Content-SHA256": payload_hash,
            **(headers or {}),
        }
        signed, sig = signature(
            self.creds,
            method=method,
            path=path,
            query=query,
            headers=send,
            payload_hash=payload_hash,
            timestamp=timestamp,
        )
        send["Authorization"] = (
            f"{ALGORITHM} Credential={self.creds.access_key}/{timestamp[:8]}/"
            f"{self.creds.region}/{self.creds.service}/aws4_request, "
            f"SignedHeaders={signed}, Signature={sig}"
        )
        if isinstance(body, bytes):
            if body or method in ("PUT", "POST"):
                send["Content-Length"] = str(len(body))
            conn.request(method, target, body=body or None, headers=send)
            response = conn.getresponse()
        else:
            send["Content-Length"] = str(body.length)
            with body.open() as stream:
                conn.request(method, target, body=stream, headers=send)
                response = conn.getresponse()
        # Only a successful GET's body is cut short; error bodies are small XML we parse.
        partial = max_body is not None and response.status in (200, 206)
        data = response.read(max_body) if partial else response.read()
        if not response.isclosed():
            # Only part of the body was wanted: this connection cannot be reused.
            self._drop_connection()
        return _Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def _backoff(self, attempt: int) -> None:
        time.sleep(random.random() * min(self.backoff_max_s, self.backoff_base_s * 2**attempt))


def _cors_xml(origins: list[str]) -> bytes:
    config = ET.Element("CORSConfiguration", xmlns=S3_XMLNS)
    rule = ET.SubElement(config, "CORSRule")
    for tag, values in (
        ("AllowedOrigin", origins),
        ("AllowedMethod", CORS_RULE["AllowedMethods"]),
        ("AllowedHeader", CORS_RULE["AllowedHeaders"]),
        ("ExposeHeader", CORS_RULE["ExposeHeaders"]),
    ):
        for value in values:
            ET.SubElement(rule, tag).text = value
    ET.SubElement(rule, "MaxAgeSeconds").text = str(CORS_RULE["MaxAgeSeconds"])
    return ET.tostring(config)
