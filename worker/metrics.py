"""Worker metrics and the tiny HTTP server for /metrics and /healthz (port 9100)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
RETRIES = Counter(
    "v2m_worker_retries_total", "Attempts that failed and were scheduled again.", ["code"]
)
DEAD_LETTERED = Counter(
    "v2m_worker_dead_lettered_total",
    "Messages sent to the dead-letter queue, by reason.",
    ["reason"],
)


def serve_health(port: int, healthy: Callable[[], bool]) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on ``port`` in a daemon thread."""

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
