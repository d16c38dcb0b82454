"""Request metrics, request-id binding and the /metrics app.

One uvicorn process (our Compose and Kubernetes setups: scale with replicas) uses
prometheus-client's default registry. Several processes behind one port
(``uvicorn --workers N``) use its multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory before the server starts; every process then writes its samples there and
whichever process answers /metrics merges all of them, so counters and histograms count
every request whichever process served it. Process metrics (which the default collector
cannot give in that mode) come from ``ServerProcessCollector``, one series per live
process, labelled by ``pid``. docs/OPERATIONS.md says more.
"""

from __future__ import annotations

import os
import platform
import re
import time
import uuid
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_asgi_app,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.procs import pid_alive


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


_MULTIPROC_DIR = multiprocess_dir()
if _MULTIPROC_DIR:  # the sample files are created with the metrics below
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

REQUESTS = Counter(
    "v2m_api_requests_total",
    "HTTP requests by route template, method and status class.",
    ["route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "v2m_api_request_duration_seconds",
    "HTTP request duration by route template.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
UPLOADS_PRESIGNED = Counter("v2m_api_uploads_presigned_total", "Upload URLs handed out.")
JOBS_CREATED = Counter(
    "v2m_api_jobs_created_total", "Job creation requests by outcome.", ["outcome"]
)
BUILD_INFO = Gauge(
    "v2m_api_build_info",
    "Always 1; the labels say which build runs.",
    ["version", "python_version"],
    multiprocess_mode="max",
)


def _version() -> str:
    try:
        return metadata.version("video2mp3")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(_version(), platform.python_version()).set(1)
JOBS_CREATED.labels("created")  # exists from the start, so increase() sees the first job


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            REQUESTS.labels(template, method, f"{status // 100}xx").inc()
            REQUEST_DURATION.labels(template, method).observe(time.perf_counter() - start)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: str = value.decode("latin-1")[:64]
            return decoded
    return None


# --------------------------------------------------------------------------- /metrics

_PID_IN_FILENAME = re.compile(r"_(\d+)\.db$")


class ServerProcessCollector(Collector):
    """process_* metrics of every live server process that writes to the multiprocess dir.

    The default ProcessCollector reports only the process answering the scrape; under
    ``uvicorn --workers N`` that is a different process each time. This one reads
    ``/proc/<pid>`` of each process that has sample files in the directory and is still
    alive, and labels its series with ``pid`` (a handful of values, replaced on restart).
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def live_pids(self) -> list[int]:
        pids = {os.getpid()}
        for path in self.directory.glob("*.db"):
            match = _PID_IN_FILENAME.search(path.name)
            if match:
                pids.add(int(match.group(1)))
        return sorted(pid for pid in pids if pid_alive(pid))

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for pid in self.live_pids():
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(families.values())


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def metrics_registry() -> CollectorRegistry:
    """The registry /metrics serves: the default one, or the merged multiprocess view."""
    directory = multiprocess_dir()
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    registry.register(ServerProcessCollector(directory))
    PlatformCollector(registry=registry)
    return registry


class MetricsApp:
    """/metrics as an ASGI app for a plain Route (an instance, so Starlette does not wrap
    it as a request handler). A Mount would answer /metrics with a redirect to /metrics/,
    and the frontend's catch-all mount at / would answer it with a 404 first."""

    path = "/metrics"

    def __init__(self) -> None:
        self.app = make_asgi_app(registry=metrics_registry())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI puts only its own routes in scope["route"]; name this one for
        # RequestMetricsMiddleware, which would otherwise label scrapes "unmatched".
        scope.setdefault("route", self)
        await self.app(scope, receive, send)
