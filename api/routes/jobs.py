"""Jobs: create from an upload, read, list, download, follow."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.auth import CallerOrQueryToken, CurrentUser, CurrentUserOrQueryToken
from api.deps import EngineDep, PublisherDep, SessionDep, SettingsDep, StorageDep
from api.errors import error_body, error_responses
from api.metrics import JOBS_CREATED
from api.streams import StreamSlots
from shared import jobs, listing, retention, services
from shared.config import Settings
from shared.errors import (
    AuthError,
    ConflictError,
    GoneError,
    NotFoundError,
    QueueError,
    RateLimitError,
)
from shared.models import TERMINAL_STATUSES, JobStatus, output_expired, utcnow
from shared.options import format_info
from shared.schemas import JobCreate, JobPublic, JobsPublic

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
    """Status, progress (0..100), output facts when completed, error when failed.

    A completed job's `output.expires_at` says until when its MP3 can be downloaded;
    `output.expired` is true once it is gone."""
    return JobPublic.from_job(jobs.get_job(session=session, job_id=job_id, owner_id=user.id))


@router.get(
    "/{job_id}/download",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        307: {"description": "Redirect to a short-lived presigned URL of the output file."},
        **error_responses(401, 404, 409, 410, 422),
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
    extension (`<stem>.mp3`, `<stem>.m4a`, ...) and served with the format's Content-Type.

    An output is kept for `V2M_OUTPUT_RETENTION_DAYS` after its job completed (7 days
    unless the deployment sets otherwise; the job's `output.expires_at` gives the date).
    Once it is gone, this answers 410 `output_expired`; the job stays listed.
    """
    job = jobs.get_job(session=session, job_id=job_id, owner_id=user.id)
    if job.status != JobStatus.completed or not job.output_key:
        message = (
            "The job failed, so there is no MP3 to download."
            if job.status == JobStatus.failed
            else f"The job is {job.status}; the MP3 can be downloaded once it is completed."
        )
        raise ConflictError(message, code="not_ready")
    if output_expired(job) or storage.stat(job.output_key) is None:
        retention.mark_output_expired(session=session, job_id=job.id, now=utcnow())
        raise GoneError(
            "The MP3 is no longer kept: downloads last "
            f"{_days(settings.output_retention_days)} after the conversion. Convert the file "
            "again to get a new one.",
            code="output_expired",
        )
    info = format_info(job.options.get("format"))
    url = storage.presign_download(
        job.output_key,
        filename=job.input_filename,
        expires_s=settings.download_url_expires_s,
        extension=info.extension,
        content_type=info.content_type,
    )
    return RedirectResponse(url, status_code=307)


def _days(days: float) -> str:
    """A retention period as people say it: "7 days", "12 hours", "90 seconds"."""
    seconds = days * 86400
    unit, size = next(
        ((u, n) for u, n in (("day", 86400), ("hour", 3600), ("minute", 60)) if seconds >= n),
        ("second", 1),
    )
    count = round(seconds / size, 1) if size > 1 else max(1, round(seconds))
    return f"{count:g} {unit}" + ("" if count == 1 else "s")


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: a `job` event (the job as JSON) whenever it "
            "changes, ending after `completed` or `failed`, or with a `closed` event (an "
            "error body) once the credential has expired or been revoked.",
            "content": {
                "text/event-stream": {
                    "example": 'event: job\ndata: {"id": "…", "status": "processing", "progress": 42}\n\n'
                }
            },
        },
        **error_responses(401, 404, 422, 429),
    },
    summary="Follow a job live (Server-Sent Events)",
)
async def job_events(
    job_id: str,
    request: Request,
    caller: CallerOrQueryToken,
    engine: EngineDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """Pushes the job whenever its status or progress changes; closes once it is finished.

    The credential is checked again every `V2M_EVENTS_CREDENTIAL_RECHECK_S` while the
    stream runs: once the token has expired, the key is revoked or the account is
    deactivated, a `closed` event (an error body) ends it. A user holds at most
    `V2M_EVENTS_STREAMS_PER_USER` streams at once (429 `too_many_streams`). Browsers use
    `EventSource`; polling `GET /v1/jobs/{id}` remains a fallback.
    """
    owner_id = caller.user.id
    slots: StreamSlots = request.app.state.event_streams

    def read() -> JobPublic:
        with Session(engine) as session:
            return JobPublic.from_job(
                jobs.get_job(session=session, job_id=job_id, owner_id=owner_id)
            )

    def recheck() -> None:
        with Session(engine) as session:
            caller.recheck(session, settings)

    first = await run_in_threadpool(read)  # 404 before the stream starts
    if not slots.acquire(owner_id):
        raise RateLimitError(
            f"You have {slots.per_user} event streams open; close one, or poll GET /v1/jobs/{{id}}.",
            retry_after_s=5,
            code="too_many_streams",
        )

    async def stream() -> AsyncIterator[str]:
        try:
            async for chunk in _follow(first, read, recheck, request, settings):
                yield chunk
        finally:
            slots.release(owner_id)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow(
    first: JobPublic,
    read: Callable[[], JobPublic],
    recheck: Callable[[], None],
    request: Request,
    settings: Settings,
) -> AsyncIterator[str]:
    """The stream's events: the job when it changes, keep-alives, and `closed` when the
    credential stops being valid."""
    current: JobPublic | None = first
    last_sent = ""
    idle = 0.0
    checked_at = time.monotonic()
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
        if time.monotonic() - checked_at >= settings.events_credential_recheck_s:
            try:
                await run_in_threadpool(recheck)
            except AuthError as exc:
                yield f"event: closed\ndata: {json.dumps(error_body(exc.code, exc.message))}\n\n"
                return
            checked_at = time.monotonic()
        try:
            current = await run_in_threadpool(read)
        except NotFoundError:
            return
