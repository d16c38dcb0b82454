"""Worker metrics and the tiny HTTP server for /metrics and /healthz (port 9100).

A worker is one process (jobs run on threads), so it uses prometheus-client's default
registry, which also carries the process_* and python_* collectors; every replica is
scraped on its own address. Names follow ``v2m_<component>_<thing>_<unit>``; no label ever
holds a job or user id. docs/OPERATIONS.md lists them all.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

JOBS_FINISHED = Counter(
    "v2m_worker_jobs_finished_total",
    "Jobs a worker finished, by outcome and error code.",
    ["outcome", "code"],
)
JOB_DURATION = Histogram(
    "v2m_worker_job_duration_seconds",
    "Wall time from a worker taking a job to finishing it.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
JOBS_IN_PROGRESS = Gauge("v2m_worker_jobs_in_progress", "Jobs this worker is running now.")
CONCURRENCY = Gauge(
    "v2m_worker_concurrency", "Jobs this worker runs at once (its RabbitMQ prefetch)."
)
RETRIES = Counter(
    "v2m_worker_retries_total", "Attempts that failed and were scheduled again.", ["code"]
)
DEAD_LETTERED = Counter(
    "v2m_worker_dead_lettered_total",
    "Messages sent to the dead-letter queue, by reason.",
    ["reason"],
)
INPUT_BYTES = Counter("v2m_worker_input_bytes_total", "Bytes of input of completed jobs.")
OUTPUT_BYTES = Counter("v2m_worker_output_bytes_total", "Bytes of MP3 that completed jobs stored.")
MEDIA_SECONDS = Counter(
    "v2m_worker_media_seconds_total", "Seconds of media that successful ffmpeg runs converted."
)
TRANSCODE_DURATION = Histogram(
    "v2m_worker_transcode_duration_seconds",
    "Wall time of successful ffmpeg runs (the conversion alone, without probe and upload).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
REALTIME_FACTOR = Histogram(
    "v2m_worker_realtime_factor",
    "Media seconds converted per wall second, per successful ffmpeg run (higher is faster).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
SPLIT_JOBS = Counter(
    "v2m_worker_split_jobs_total", "Jobs split into segments that any worker encodes."
)
SEGMENTS_FINISHED = Counter(
    "v2m_worker_segments_finished_total",
    "Segments of split jobs a worker finished, by outcome (done, retry, failed).",
    ["outcome"],
)
JOIN_DURATION = Histogram(
    "v2m_worker_join_duration_seconds",
    "Wall time of joining a split job's segments (fetch, join, measure, upload).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
FFMPEG_EXITS = Counter(
    "v2m_worker_ffmpeg_exits_total",
    "ffprobe and ffmpeg exits by tool and exit code (negative: killed by that signal).",
    ["tool", "exit_code"],
)
BUILD_INFO = Gauge(
    "v2m_worker_build_info",
    "Always 1; the labels say which build runs.",
    ["version", "python_version"],
)

# Series that exist from the start, so rate()/increase() see their first increment.
_KNOWN_FINISHES = [
    ("completed", ""),
    ("failed", "no_audio_stream"),
    ("failed", "unsupported_media"),
    ("failed", "resource_limit"),
    ("failed", "timeout"),
    ("failed", "retries_exhausted"),
]
_KNOWN_DEAD_LETTER_REASONS = ["poison", "unknown_job", "retries_exhausted"]


def _version() -> str:
    try:
        return metadata.version("video2mp3")
    except metadata.PackageNotFoundError:
        return "unknown"


def _initialise() -> None:
    BUILD_INFO.labels(_version(), platform.python_version()).set(1)
    for outcome, code in _KNOWN_FINISHES:
        JOBS_FINISHED.labels(outcome, code)
    for reason in _KNOWN_DEAD_LETTER_REASONS:
        DEAD_LETTERED.labels(reason)
    for tool in ("ffprobe", "ffmpeg"):
        FFMPEG_EXITS.labels(tool, "0")
    for outcome in ("done", "retry", "failed"):
        SEGMENTS_FINISHED.labels(outcome)


_initialise()


def record_exit(tool: str, returncode: int) -> None:
    FFMPEG_EXITS.labels(tool, str(returncode)).inc()


def record_transcode(media_s: float | None, wall_s: float) -> None:
    """One successful ffmpeg run: its wall time and, when the media length is known, speed."""
    TRANSCODE_DURATION.observe(wall_s)
    if media_s and media_s > 0:
        MEDIA_SECONDS.inc(media_s)
        REALTIME_FACTOR.observe(media_s / max(wall_s, 1e-6))


def record_completed(*, input_bytes: int, output_bytes: int) -> None:
    INPUT_BYTES.inc(max(input_bytes, 0))
    OUTPUT_BYTES.inc(max(output_bytes, 0))


def serve_health(
    port: int, healthy: Callable[[], bool], *, concurrency: int = 1
) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on ``port`` in a daemon thread; /healthz is 200 while
    ``healthy()`` (the worker's loop turns), 503 otherwise."""
    CONCURRENCY.set(concurrency)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype, status = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                ok = healthy()
                body = b'{"status":"ok"}' if ok else b'{"status":"unavailable"}'
                ctype, status = "application/json", 200 if ok else 503
            else:
                body, ctype, status = b"not found", "text/plain", 404
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server
