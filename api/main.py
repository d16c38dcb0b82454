"""The FastAPI app: lifespan (engine, storage, publisher), middleware, routers, /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from api.body_limit import BodyLimitMiddleware
from api.errors import register_error_handlers
from api.hashing import PasswordHashing
from api.metrics import MetricsApp, RequestMetricsMiddleware
from api.routes import account, auth, deliveries, health, jobs, multipart, uploads
from api.routes.multipart import COMPLETE_PATH
from api.security_headers import SecurityHeadersMiddleware
from api.streams import StreamSlots
from shared import users
from shared.config import Settings, get_settings
from shared.db import make_engine
from shared.logging import configure_logging
from shared.migrate import prepare
from shared.multipart_schemas import MAX_COMPLETE_BODY_BYTES
from shared.queue import Publisher
from shared.storage import Storage

log = structlog.get_logger("api")

DESCRIPTION = """
Turn videos into MP3s. The flow:

1. `POST /v1/uploads` → a presigned `url` and the `headers` to send.
2. `PUT` the file's bytes to that URL (straight to object storage; never through this API).
3. `POST /v1/jobs` with the `upload_id` → a queued job.
4. `GET /v1/jobs/{id}` until `status` is `completed` (or `failed`, with `error`).
5. `GET /v1/jobs/{id}/download` → redirect to the MP3.

Every error body is `{"error": {"code": "snake_case", "message": "A sentence."}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        engine = make_engine(settings)
        await run_in_threadpool(prepare, settings, engine)
        if settings.dev_api_key or settings.dev_password:
            await run_in_threadpool(_ensure_dev_user, engine, settings)
        storage = Storage(settings)
        publisher = Publisher(settings)
        app.state.engine, app.state.storage, app.state.publisher = engine, storage, publisher
        app.state.password_hashing = hashing = PasswordHashing(
            concurrency=settings.login_hash_concurrency, wait_s=settings.login_hash_wait_s
        )
        log.info("api_started", database=engine.url.get_backend_name(), bucket=settings.s3_bucket)
        yield
        await run_in_threadpool(publisher.close_quietly)
        hashing.close()
        engine.dispose()

    app = FastAPI(
        title="video2mp3",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # The docs list the groups in the order of the flow, whatever the routes' order.
        openapi_tags=[{"name": tag} for tag in ("health", "auth", "uploads", "jobs")],
    )
    app.state.settings = settings
    app.state.event_streams = StreamSlots(settings.events_streams_per_user)
    register_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            allow_credentials=False,  # bearer tokens, never cookies: no credentialed CORS
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_body_bytes,
        larger=(COMPLETE_PATH, max(settings.max_request_body_bytes, MAX_COMPLETE_BODY_BYTES)),
    )
    app.add_middleware(RequestMetricsMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    for module in (health, jobs, uploads, multipart, auth, account, deliveries):
        app.include_router(module.router)
    app.router.routes.append(Route("/metrics", MetricsApp(), include_in_schema=False))
    _mount_frontend(app, Path(settings.frontend_dir))
    return app


def _ensure_dev_user(engine: Engine, settings: Settings) -> None:
    with Session(engine) as session:
        users.ensure_dev_user(session=session, settings=settings)


def _mount_frontend(app: FastAPI, directory: Path) -> None:
    index = directory / "index.html"
    if not index.is_file():
        return

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(index)

    app.mount("/", StaticFiles(directory=directory), name="frontend")


app = create_app()
