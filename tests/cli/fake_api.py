"""An in-memory video2mp3 API and storage behind httpx.MockTransport, for the client's
unit tests: the routes v2m calls, with the API's status codes, error bodies, idempotency
and events stream."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from cli.client import ApiClient

API = "http://api.test"
STORAGE = "http://storage.test"
KEY = "v2m_unit_key"


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


@dataclass
class FakeApi:
    """State a test can inspect: uploads (id → bytes or None), jobs, request log."""

    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    fail_media: set[bytes] = field(default_factory=set)  # inputs whose job fails
    before: Callable[[httpx.Request], httpx.Response | None] | None = None
    multipart_at: int | None = None  # uploads of this size and more go in parts
    part_size: int = 4
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> ApiClient:
        api = httpx.Client(
            base_url=API,
            headers={"Authorization": f"Bearer {KEY}"},
            transport=httpx.MockTransport(self.handle),
        )
        storage = httpx.Client(transport=httpx.MockTransport(self.handle))
        return ApiClient(API, api, storage)

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.startswith(prefix))

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(f"{request.method} {request.url.host}{request.url.path}")
        if self.before is not None and (early := self.before(request)) is not None:
            return early
        if request.url.host == "storage.test":
            return self._storage(request)
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return error(401, "unauthenticated", "The API key is not valid.")
        path, method = request.url.path, request.method
        if (method, path) == ("GET", "/v1/auth/me"):
            return httpx.Response(200, json={"id": "u1", "email": "ada@example.com"})
        if (method, path) == ("POST", "/v1/uploads"):
            return self._create_upload(json.loads(request.content))
        if (method, path) == ("POST", "/v1/jobs"):
            return self._create_job(request)
        parts = path.split("/")  # ['', 'v1', 'jobs', id, ...]
        if parts[2] == "uploads" and len(parts) == 5:
            return self._multipart(method, parts[3], parts[4], request)
        job = self.jobs.get(parts[3]) if len(parts) > 3 else None
        if job is None:
            return error(404, "job_not_found", "No job has that id.")
        if path.endswith("/events"):
            body = f"event: job\ndata: {json.dumps(job)}\n\n"
            return httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})
        if path.endswith("/download"):
            return httpx.Response(307, headers={"Location": f"{STORAGE}/outputs/{job['id']}"})
        return httpx.Response(200, json=job)

    def _storage(self, request: httpx.Request) -> httpx.Response:
        key = request.url.path.lstrip("/")
        if request.method == "PUT" and key.startswith("parts/"):
            _, upload_id, number = key.split("/")
            part = request.read()
            self.uploads[upload_id]["parts"][int(number)] = part
            return httpx.Response(200, headers={"ETag": f'"{hash(part) & 0xFFFF:x}"'})
        if request.method == "PUT":
            self.objects[key] = request.read()
            return httpx.Response(200)
        data = self.objects.get(key)
        return httpx.Response(200, content=data) if data is not None else httpx.Response(404)

    def _multipart(
        self, method: str, upload_id: str, action: str, request: httpx.Request
    ) -> httpx.Response:
        upload = self.uploads.get(upload_id)
        if upload is None or "parts" not in upload:
            return error(404, "upload_not_found", "No upload has that id.")
        stored = upload["parts"]
        if (method, action) == ("GET", "parts"):
            listed = [
                {"part_number": n, "size_bytes": len(d), "etag": f'"{hash(d) & 0xFFFF:x}"'}
                for n, d in sorted(stored.items())
            ]
            return httpx.Response(200, json={"parts": listed})
        body = json.loads(request.content)
        if action == "parts":
            urls = [
                {"part_number": n, "url": f"{STORAGE}/parts/{upload_id}/{n}", "headers": {}}
                for n in body["part_numbers"]
            ]
            return httpx.Response(200, json={"parts": urls})
        named = [p["part_number"] for p in body["parts"]]
        if named != sorted(stored):
            return error(409, "upload_part_missing", "A part is missing.")
        self.objects[upload["key"]] = b"".join(stored[n] for n in named)
        return httpx.Response(200, json={"upload_id": upload_id})

    def _create_upload(self, body: dict[str, Any]) -> httpx.Response:
        upload_id = str(uuid.uuid4())
        self.uploads[upload_id] = {**body, "key": f"uploads/{upload_id}"}
        size = body["size_bytes"]
        if self.multipart_at is not None and size >= self.multipart_at:
            self.uploads[upload_id]["parts"] = {}
            plan = {"part_size": self.part_size, "part_count": -(-size // self.part_size)}
            return httpx.Response(
                201, json={"upload_id": upload_id, "url": None, "multipart": plan}
            )
        grant = {
            "upload_id": upload_id,
            "url": f"{STORAGE}/uploads/{upload_id}",
            "method": "PUT",
            "headers": {
                "Content-Type": body["content_type"],
                "Content-Length": str(body["size_bytes"]),
            },
        }
        return httpx.Response(201, json=grant)

    def _create_job(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if set(body.get("options", {})) - {"bitrate_kbps", "quality", "channels", "sample_rate_hz"}:
            return error(
                422,
                "validation_error",
                "The request is not valid: options.format: Extra inputs are not permitted.",
            )
        key = request.headers.get("Idempotency-Key")
        if key in self.by_key:
            job = self.jobs[self.by_key[key]]
            if job["upload_id"] != body["upload_id"]:
                return error(
                    409,
                    "idempotency_key_reused",
                    "That Idempotency-Key was already used with a different request body.",
                )
            return httpx.Response(202, json=job, headers={"Idempotent-Replayed": "true"})
        upload = self.uploads.get(body["upload_id"])
        if upload is None:
            return error(404, "upload_not_found", "No upload has that id.")
        data = self.objects.get(upload["key"])
        if data is None:
            return error(409, "upload_incomplete", "The upload is not complete.")
        job_id = str(uuid.uuid4())
        failed = data in self.fail_media
        job = {
            "id": job_id,
            "upload_id": body["upload_id"],
            "status": "failed" if failed else "completed",
            "progress": 100,
            "input": {"filename": upload["filename"], "size_bytes": upload["size_bytes"]},
            "options": body.get("options", {}),
            "error": {
                "code": "unsupported_media",
                "message": "The file's audio could not be decoded.",
            }
            if failed
            else None,
        }
        self.jobs[job_id] = job
        if key:
            self.by_key[key] = job_id
        if not failed:
            self.objects[f"outputs/{job_id}"] = b"ID3" + data[:10]
        return httpx.Response(202, json={**job, "status": "queued", "progress": 0, "error": None})
