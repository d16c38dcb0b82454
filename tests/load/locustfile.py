"""Locust load test of video2mp3's whole flow, as people use it. Targets the local stack only.

    locust -f tests/load/locustfile.py --host http://127.0.0.1:8000            # web UI :8089
    locust -f tests/load/locustfile.py --host http://127.0.0.1:8000 --headless -u 10 -r 5 -t 1m
    docker compose -f docker-compose.locust.yml up                             # against Compose

Two kinds of users:

- ``ConvertingUser`` does what a person with a video does: asks for a presigned URL, PUTs
  the bytes of a small generated video to it, creates the job, follows it with server-sent
  events until it is finished, follows the download redirect and fetches the MP3.
- ``BrowsingUser`` reads: lists jobs and asks for the status of the ones it saw.

Besides the HTTP requests, custom events time each journey's stages (request type
``journey``): ``upload`` (presign + PUT), ``queue wait`` (created -> a worker started it)
and ``conversion`` (started -> completed), both from the job's own timestamps, and
``whole journey`` (presign to MP3 in hand). A job that fails or does not finish within
``V2M_LOAD_JOB_TIMEOUT_S`` (default 120) is a failure of ``journey / job``.

Environment: ``V2M_API_KEY`` sends ``Authorization: Bearer <key>`` to the API (never to
storage); ``V2M_LOAD_MEDIA`` uploads that file instead of the generated video. The video is
made with ffmpeg's lavfi sources when ffmpeg is on PATH (an H.264/AAC MP4), otherwise
written in Python (an AVI of raw video and PCM audio; the Locust image has no ffmpeg).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

JOB_TIMEOUT_S = float(os.environ.get("V2M_LOAD_JOB_TIMEOUT_S", "120"))
TERMINAL = ("completed", "failed")


# --------------------------------------------------------------------------- the video


def _ffmpeg_mp4(seconds: int = 5) -> bytes:
    with tempfile.TemporaryDirectory(prefix="v2m-locust-") as tmp:
        out = Path(tmp) / "clip.mp4"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
            + ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=15"]
            + ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
            + ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]
            + ["-ac", "2", "-movflags", "+faststart", str(out)],
            check=True,
            timeout=120,
        )
        return out.read_bytes()


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _riff_list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def python_avi(seconds: int = 5, width: int = 64, height: int = 48, fps: int = 5) -> bytes:
    """An AVI with raw RGB video and a 16 kHz mono PCM tone, written in pure Python."""
    rate, frames = 16000, seconds * fps
    frame_bytes = width * height * 3
    per_frame = rate // fps  # samples of audio per video frame
    audio = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(rate * seconds)
    )
    chunks: list[bytes] = []
    index: list[bytes] = []
    offset = 4  # idx1 offsets count from the "movi" fourcc
    for n in range(frames):
        shade = (n * 9) % 256
        for fourcc, data in (
            (b"00db", bytes([shade, 255 - shade, 128]) * (width * height)),
            (b"01wb", audio[n * per_frame * 2 : (n + 1) * per_frame * 2]),
        ):
            chunk = _chunk(fourcc, data)
            index.append(fourcc + struct.pack("<III", 0x10, offset, len(data)))
            chunks.append(chunk)
            offset += len(chunk)
    avih = struct.pack(
        "<10I16x", 1_000_000 // fps, frame_bytes * fps + rate * 2, 0, 0x10, frames, 0, 2,
        frame_bytes, width, height,
    )  # fmt: skip
    video = _riff_list(
        b"strl",
        _chunk(b"strh", b"vidsDIB " + struct.pack("<IHHIIIIIIII4h", 0, 0, 0, 0, 1, fps, 0,
                                                  frames, frame_bytes, 0, 0, 0, 0, width, height)),
        _chunk(b"strf", struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, frame_bytes,
                                    0, 0, 0, 0)),
    )  # fmt: skip
    sound = _riff_list(
        b"strl",
        _chunk(b"strh", b"auds\0\0\0\0" + struct.pack("<IHHIIIIIIII4h", 0, 0, 0, 0, 2, rate * 2,
                                                       0, rate * seconds, per_frame * 2, 0, 2,
                                                       0, 0, 0, 0)),
        _chunk(b"strf", struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)),
    )  # fmt: skip
    body = (
        b"AVI "
        + _riff_list(b"hdrl", _chunk(b"avih", avih), video, sound)
        + _riff_list(b"movi", *chunks)
        + _chunk(b"idx1", b"".join(index))
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def load_media() -> tuple[bytes, str, str]:
    """(bytes, filename, content type) of the video every ConvertingUser uploads."""
    given = os.environ.get("V2M_LOAD_MEDIA")
    if given:
        path = Path(given)
        return path.read_bytes(), path.name, "application/octet-stream"
    if shutil.which("ffmpeg"):
        return _ffmpeg_mp4(), "holiday.mp4", "video/mp4"
    return python_avi(), "holiday.avi", "video/x-msvideo"


MEDIA: tuple[bytes, str, str] | None = None


def _make_media(**_kwargs: Any) -> None:
    global MEDIA
    MEDIA = load_media()


events.init.add_listener(_make_media)  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- helpers


def api_headers() -> dict[str, str]:
    key = os.environ.get("V2M_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(
        start.replace("Z", "+00:00")
    )
    return delta.total_seconds()


def record(name: str, seconds: float, exception: Exception | None = None, length: int = 0) -> None:
    """A custom Locust event: shows up as request type ``journey`` in the statistics."""
    events.request.fire(  # type: ignore[no-untyped-call]
        request_type="journey",
        name=name,
        response_time=seconds * 1000,
        response_length=length,
        exception=exception,
        context={},
    )


class JourneyError(Exception):
    pass


def _error_code(resp: Any) -> str | None:
    try:
        code = resp.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(code)


# --------------------------------------------------------------------------- users


class ConvertingUser(HttpUser):
    """Presign, upload, convert, follow, download: the whole thing a person does."""

    weight = 3
    wait_time = between(1, 3)

    @task
    def convert_a_video(self) -> None:
        assert MEDIA is not None
        data, filename, content_type = MEDIA
        started = time.monotonic()
        auth = api_headers()

        with self.client.post(
            "/v1/uploads",
            json={"filename": filename, "content_type": content_type, "size_bytes": len(data)},
            headers=auth,
            name="POST /v1/uploads",
            catch_response=True,
        ) as resp:
            if resp.status_code != 201:
                resp.failure(f"presign: {resp.status_code} {resp.text[:200]}")
                return
            grant = resp.json()
        with self.client.put(
            grant["url"],
            data=data,
            headers=grant["headers"],
            name="PUT presigned upload",
            catch_response=True,
        ) as put:
            if put.status_code != 200:
                put.failure(f"upload: {put.status_code} {put.text[:200]}")
                return
        record("upload", time.monotonic() - started, length=len(data))

        with self.client.post(
            "/v1/jobs",
            json={"upload_id": grant["upload_id"], "options": {}},
            headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
            name="POST /v1/jobs",
            catch_response=True,
        ) as resp:
            if resp.status_code != 202:
                resp.failure(f"create job: {resp.status_code} {resp.text[:200]}")
                return
            job: dict[str, Any] = resp.json()

        try:
            job = self.follow(job["id"], auth)
        except JourneyError as exc:
            record("job", time.monotonic() - started, exc)
            return
        queue_wait = _seconds_between(job.get("created_at"), job.get("started_at"))
        conversion = _seconds_between(job.get("started_at"), job.get("finished_at"))
        if queue_wait is not None:
            record("queue wait", queue_wait)
        if conversion is not None:
            record("conversion", conversion)

        with self.client.get(
            f"/v1/jobs/{job['id']}/download",
            headers=auth,
            allow_redirects=False,
            name="GET /v1/jobs/{id}/download",
            catch_response=True,
        ) as resp:
            if resp.status_code != 307:
                resp.failure(f"download: {resp.status_code} {resp.text[:200]}")
                return
            location = resp.headers["location"]
        with self.client.get(location, name="GET presigned MP3", catch_response=True) as mp3:
            body = mp3.content
            if mp3.status_code != 200 or not (body[:3] == b"ID3" or body[:2] == b"\xff\xfb"):
                mp3.failure(f"MP3: {mp3.status_code}, {len(body)} bytes")
                return
        record("whole journey", time.monotonic() - started, length=len(body))

    def follow(self, job_id: str, auth: dict[str, str]) -> dict[str, Any]:
        """Follow the job's server-sent events to the end; the last job seen."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        job: dict[str, Any] = {}
        with self.client.get(
            f"/v1/jobs/{job_id}/events",
            headers={**auth, "Accept": "text/event-stream"},
            stream=True,
            timeout=JOB_TIMEOUT_S,
            name="GET /v1/jobs/{id}/events (until finished)",
            catch_response=True,
        ) as resp:
            if resp.status_code == 429 and _error_code(resp) == "too_many_streams":
                # The key's streams are all taken: poll instead, as the page does.
                resp.success()
                return self.poll(job_id, auth, deadline)
            if resp.status_code != 200:
                resp.failure(f"events: {resp.status_code}")
                raise JourneyError(f"events answered {resp.status_code}")
            for raw in resp.iter_lines():
                line = raw.decode() if isinstance(raw, bytes) else raw
                if line.startswith("data:"):
                    job = json.loads(line[5:])
                    if job.get("status") in TERMINAL:
                        break
                if time.monotonic() > deadline:
                    break
            resp.success()
        return self.finished(job_id, job)

    def poll(self, job_id: str, auth: dict[str, str], deadline: float) -> dict[str, Any]:
        """Read the job once a second until it ends; the last job seen."""
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = self.client.get(f"/v1/jobs/{job_id}", headers=auth, name="GET /v1/jobs/{id}")
            job = resp.json() if resp.status_code == 200 else job
            if job.get("status") in TERMINAL:
                break
            time.sleep(1)
        return self.finished(job_id, job)

    @staticmethod
    def finished(job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """The job, or JourneyError when it did not complete."""
        if job.get("status") != "completed":
            raise JourneyError(
                f"job {job_id} ended {job.get('status', 'unknown')}: {job.get('error')}"
                if job.get("status") == "failed"
                else f"job {job_id} not finished after {JOB_TIMEOUT_S:.0f} s"
            )
        return job


class BrowsingUser(HttpUser):
    """Reads: the list of jobs, and the status of jobs it has seen."""

    weight = 2
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.seen: list[str] = []

    @task(1)
    def list_jobs(self) -> None:
        resp = self.client.get("/v1/jobs?limit=20", headers=api_headers(), name="GET /v1/jobs")
        if resp.status_code == 200:
            self.seen = [item["id"] for item in resp.json()["items"]] or self.seen

    @task(4)
    def job_status(self) -> None:
        if not self.seen:
            self.list_jobs()
            return
        self.client.get(
            f"/v1/jobs/{random.choice(self.seen)}", headers=api_headers(), name="GET /v1/jobs/{id}"
        )
