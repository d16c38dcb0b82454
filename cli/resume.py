"""Resuming: the same file with the same options maps to the same job.

Each job is created with an Idempotency-Key derived from the file's content hash and the
options, so the API answers a repeated create with the job it already has. The request
body names the upload, so the upload id each key was created with is kept in a small
state file beside the config (0600): a second run sends the same body, gets the same job
back, and uploads nothing.

The key also carries a random id of that state file. Without it, a computer that never
saw the first run (or whose state file was deleted) would upload again and send the key
with another upload id, which the API refuses (409 `idempotency_key_reused`); with it,
that computer simply makes its own job.

A large file goes up in parts (cli/parts.py); its upload's plan is kept here too, so a run
stopped part-way sends only the parts storage does not hold yet.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from cli.config import config_dir, read_json, write_private_json

STATE_FILE = "uploads.json"
PLANS = "multipart"  # upload id → {part_size, part_count}: the parts themselves are in storage


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def idempotency_key(content_sha256: str, options: dict[str, Any], state_id: str) -> str:
    canonical = json.dumps(options, sort_keys=True, separators=(",", ":"))
    text = f"{state_id}\n{content_sha256}\n{canonical}"
    return "v2m-" + hashlib.sha256(text.encode()).hexdigest()


class UploadState:
    """Idempotency key → upload id, per API URL, shared by the threads of one run."""

    def __init__(self, api_url: str, path: Path | None = None) -> None:
        self.api_url = api_url
        self.path = path or config_dir() / STATE_FILE
        self._lock = threading.Lock()

    def state_id(self) -> str:
        """This state file's random id, made on first use."""
        with self._lock:
            data = read_json(self.path)
            if not data.get("state_id"):
                data["state_id"] = uuid.uuid4().hex
                write_private_json(self.path, data)
            return str(data["state_id"])

    def get(self, key: str) -> str | None:
        with self._lock:
            upload_id = read_json(self.path).get(self.api_url, {}).get(key)
        return str(upload_id) if upload_id else None

    def put(self, key: str, upload_id: str) -> None:
        with self._lock:
            data = read_json(self.path)
            data.setdefault(self.api_url, {})[key] = upload_id
            write_private_json(self.path, data)

    def plan(self, upload_id: str) -> dict[str, Any] | None:
        """The part size and count of a multipart upload begun by an earlier run."""
        with self._lock:
            plan = read_json(self.path).get(PLANS, {}).get(upload_id)
        return dict(plan) if plan else None

    def put_plan(self, upload_id: str, plan: dict[str, Any]) -> None:
        with self._lock:
            data = read_json(self.path)
            data.setdefault(PLANS, {})[upload_id] = plan
            write_private_json(self.path, data)
