"""Jobs: create from an upload, read, list, download, follow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.auth import CurrentUser, CurrentUserOrQueryToken
from api.deps import EngineDep, PublisherDep, SessionDep, SettingsDep, StorageDep
from api.errors import error_responses
from api.metrics import JOBS_CREATED
from shared import jobs, listing, services
from shared.errors import ConflictError, NotFoundError, QueueError
from shared.models import TERMINAL_STATUSES, JobCreate, JobPublic, JobsPublic, JobStatus
from shared.options import format_info

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
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


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses=error_responses(401, 404, 409, 410, 422, 429, 503),
    summary="Convert an uploaded file (MP3 unless another format is asked)",
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
    try:
        created = services.create_job(
            session=session,
            storage=storage,
            publisher=publisher,
            settings=settings,
            user=user,
            job_in=body,
            idempotency_key=idempotency_key,
        )
    except QueueError:
        JOBS_CREATED.labels("queue_unavailable").inc()
        raise
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        JOBS_CREATED.labels("created").inc()
        log.info("job_created", job_id=created.job.id, input_bytes=created.job.input_size_bytes)
    return JobPublic.from_job(created.job)


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
    rows, next_cursor = listing.list_jobs(
        session=session, owner_id=user.id, status=status, limit=limit, cursor=cursor
    )
    return JobsPublic(items=[JobPublic.from_job(j) for j in rows], next_cursor=next_cursor)


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    responses=error_responses(401, 404, 422),
    summary="Get a job",
)
def get_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobPublic:
    """Status, progress (0..100), output facts when completed, error when failed."""
    return JobPublic.from_job(jobs.get_job(session=session, job_id=job_id, owner_id=user.id))


@router.get(
    "/{job_id}/download",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        307: {"description": "Redirect to a short-lived presigned URL of the output file."},
        **error_responses(401, 404, 409, 422),
    },
    summary="Download the output (MP3 unless another format was asked)",
)
def download(
    job_id: str,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    user: CurrentUserOrQueryToken,
) -> RedirectResponse:
    """Redirects to the output, named after the original file with the format's
    extension (`<stem>.mp3`, `<stem>.m4a`, ...) and served with the format's Content-Type."""
    job = jobs.get_job(session=session, job_id=job_id, owner_id=user.id)
    if job.status != JobStatus.completed or not job.output_key:
        message = (
            "The job failed, so there is no MP3 to download."
            if job.status == JobStatus.failed
            else f"The job is {job.status}; the MP3 can be downloaded once it is completed."
        )
        raise ConflictError(message, code="not_ready")
    info = format_info(job.options.get("format"))
    url = storage.presign_download(
        job.output_key,
        filename=job.input_filename,
        expires_s=settings.download_url_expires_s,
        extension=info.extension,
        content_type=info.content_type,
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
    job_id: str,
    request: Request,
    user: CurrentUserOrQueryToken,
    engine: EngineDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """Pushes the job whenever its status or progress changes; closes once it is finished.

    Browsers use `EventSource`; polling `GET /v1/jobs/{id}` remains a fallback.
    """
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
