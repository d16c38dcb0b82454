"""Jobs: create from an upload, read, list, download."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api import ratelimit
from api.auth import BEARER_REQUIRED, CurrentUser, CurrentUserOrQueryToken, authenticate
from api.deps import PublisherDep, SessionDep, SettingsDep, StorageDep, engine_of
from api.errors import ApiError, error_responses
from api.job_cache import CompletedJobCache
from api.metrics import JOBS_CREATED
from shared import jobs
from shared.config import Settings
from shared.errors import ConflictError, NotFoundError, QueueError
from shared.models import (
    TERMINAL_STATUSES,
    Job,
    JobCreate,
    JobPublic,
    JobsPublic,
    JobStatus,
    as_utc,
    utcnow,
)
from shared.queue import JobMessage

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# GET /v1/jobs/{job_id}, the route clients poll, reads its one path parameter itself:
# FastAPI's per-request handling of a declared parameter costs about as much as the rest
# of the route. It is documented here exactly as FastAPI documents a declared `job_id: str`.
JOB_ID_PARAMETER = {
    "in": "path",
    "name": "job_id",
    "required": True,
    "schema": {"title": "Job Id", "type": "string"},
}
log = structlog.get_logger("api.jobs")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a create safely: the same key and body return the same job.",
    ),
]


def _request_hash(body: JobCreate) -> str:
    return hashlib.sha256(body.model_dump_json(exclude_none=True).encode()).hexdigest()


def _replay(existing: Job, request_hash: str, response: Response) -> JobPublic:
    if existing.request_hash != request_hash:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "That Idempotency-Key was already used with a different request body.",
        )
    response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.from_job(existing)


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses=error_responses(401, 404, 409, 410, 422, 429, 503),
    summary="Convert an uploaded file to MP3",
)
def create_job(
    body: JobCreate,
    response: Response,
    user: CurrentUser,
    settings: SettingsDep,
    session: SessionDep,
    storage: StorageDep,
    publisher: PublisherDep,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Queue a conversion of an upload whose bytes have been PUT.

    The upload must exist in storage with its declared size (else 409
    `upload_incomplete`). With an `Idempotency-Key`, repeating the request returns the
    same job instead of creating another.
    """
    request_hash = _request_hash(body)
    if idempotency_key:
        existing = jobs.find_by_idempotency_key(
            session=session, key=idempotency_key, owner_id=user.id
        )
        if existing is not None:
            return _replay(existing, request_hash, response)

    upload = jobs.get_upload(session=session, upload_id=body.upload_id, owner_id=user.id)
    if jobs.upload_has_job(session=session, upload_id=upload.id):
        raise ApiError(
            409,
            "upload_already_used",
            "That upload already has a job; upload the file again to convert it again.",
        )
    ratelimit.check_job(session=session, user=user, settings=settings)
    info = storage.stat(upload.key)
    if info is None or info.size_bytes != upload.size_bytes:
        expires_at = as_utc(upload.expires_at)
        if info is None and expires_at is not None and expires_at < utcnow():
            raise ApiError(
                410,
                "upload_expired",
                "The upload URL expired before the file arrived; start a new upload.",
            )
        got = "nothing" if info is None else f"{info.size_bytes} bytes"
        raise ApiError(
            409,
            "upload_incomplete",
            f"The upload is not complete: expected {upload.size_bytes} bytes, storage has {got}.",
        )
    try:
        job = jobs.create_job(
            session=session,
            upload=upload,
            options=body.options.model_dump(exclude_none=True),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
    except ConflictError:
        if idempotency_key:  # a concurrent request with the same key won the race
            existing = jobs.find_by_idempotency_key(
                session=session, key=idempotency_key, owner_id=user.id
            )
            if existing is not None:
                return _replay(existing, request_hash, response)
        raise
    try:
        publisher.publish(JobMessage(job_id=job.id, token=job.dispatch_token))
    except QueueError:
        # Nothing half-created: the row goes, the client may retry with the same key.
        jobs.delete_job(session=session, job_id=job.id)
        JOBS_CREATED.labels("queue_unavailable").inc()
        raise
    jobs.mark_published(session=session, job_id=job.id, token=job.dispatch_token)
    JOBS_CREATED.labels("created").inc()
    log.info("job_created", job_id=job.id, input_bytes=upload.size_bytes)
    return JobPublic.from_job(job)


@router.get(
    "",
    response_model=JobsPublic,
    responses=error_responses(401, 422),
    summary="List your jobs, newest first",
)
def list_jobs(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> JobsPublic:
    try:
        rows, next_cursor = jobs.list_jobs(
            session=session, status=status, limit=limit, cursor=cursor, owner_id=user.id
        )
    except jobs.InvalidCursorError as exc:
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API handed out.") from exc
    return JobsPublic(items=[JobPublic.from_job(j) for j in rows], next_cursor=next_cursor)


@router.get(
    "/{job_id}",  # noqa: FAST003 (read from request.path_params: see JOB_ID_PARAMETER)
    response_model=JobPublic,
    responses=error_responses(401, 404, 422),
    summary="Get a job",
    openapi_extra={**BEARER_REQUIRED, "parameters": [JOB_ID_PARAMETER]},
)
async def get_job(request: Request) -> Response:
    """Status, progress (0..100), output facts when completed, error when failed."""
    job_id: str = request.path_params["job_id"]
    background = BackgroundTasks()
    user = await authenticate(request, background)
    cache: CompletedJobCache = request.app.state.completed_jobs
    cached = cache.get(job_id)
    if cached is not None:
        owner_id, body = cached
        if owner_id != user.id:  # exactly like a missing job
            raise NotFoundError("No job has that id.", code="job_not_found")
    else:
        job = await run_in_threadpool(_read_job, engine_of(request), job_id, user.id)
        body = JobPublic.from_job(job).model_dump_json().encode()
        if job.status == JobStatus.completed:
            cache.put(job_id, job.owner_id, body)
    # Already JobPublic's JSON: not validated and serialised again by FastAPI.
    return Response(body, media_type="application/json", background=background)


def _read_job(engine: Engine, job_id: str, owner_id: str) -> Job:
    with engine.connect() as conn:  # a read: no transaction to commit
        return jobs.fetch_job(conn=conn, job_id=job_id, owner_id=owner_id)


@router.get(
    "/{job_id}/download",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        307: {"description": "Redirect to a short-lived presigned URL of the MP3."},
        **error_responses(401, 404, 409, 422),
    },
    summary="Download the MP3",
)
def download(
    job_id: str,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    user: CurrentUserOrQueryToken,
) -> RedirectResponse:
    """Redirects to the MP3, named after the original file (`<stem>.mp3`)."""
    job = jobs.get_job(session=session, job_id=job_id, owner_id=user.id)
    if job.status != JobStatus.completed or not job.output_key:
        message = (
            "The job failed, so there is no MP3 to download."
            if job.status == JobStatus.failed
            else f"The job is {job.status}; the MP3 can be downloaded once it is completed."
        )
        raise ApiError(409, "not_ready", message)
    url = storage.presign_download(
        job.output_key, filename=job.input_filename, expires_s=settings.download_url_expires_s
    )
    return RedirectResponse(url, status_code=307)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: a `job` event (the job as JSON) whenever it "
            "changes, ending after `completed` or `failed`.",
            "content": {
                "text/event-stream": {
                    "example": 'event: job\ndata: {"id": "…", "status": "processing", "progress": 42}\n\n'
                }
            },
        },
        **error_responses(401, 404, 422),
    },
    summary="Follow a job live (Server-Sent Events)",
)
async def job_events(
    job_id: str, request: Request, user: CurrentUserOrQueryToken
) -> StreamingResponse:
    """Pushes the job whenever its status or progress changes; closes once it is finished.

    Browsers use `EventSource`; polling `GET /v1/jobs/{id}` remains a fallback.
    """
    engine = request.app.state.engine
    settings: Settings = request.app.state.settings
    owner_id = user.id

    def read() -> JobPublic:
        with Session(engine) as session:
            return JobPublic.from_job(
                jobs.get_job(session=session, job_id=job_id, owner_id=owner_id)
            )

    first = await run_in_threadpool(read)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        current: JobPublic | None = first
        last_sent = ""
        idle = 0.0
        while True:
            if current is not None:
                payload = current.model_dump_json()
                if payload != last_sent:
                    yield f"event: job\ndata: {payload}\n\n"
                    last_sent, idle = payload, 0.0
                if current.status in TERMINAL_STATUSES:
                    return
            if await request.is_disconnected():
                return
            await asyncio.sleep(settings.events_poll_interval_s)
            idle += settings.events_poll_interval_s
            if idle >= 15:
                yield ": keep-alive\n\n"
                idle = 0.0
            try:
                current = await run_in_threadpool(read)
            except NotFoundError:
                return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
