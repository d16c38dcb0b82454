"""Database tables and the v1 API's request/response schemas."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)
from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from shared.multipart_schemas import MultipartPlan
from shared.options import JobOptions as JobOptions  # re-exported: part of the v1 schemas


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class JobStatus(StrEnum):
    queued = "queued"
    processing = "processing"
    completed = "completed"
    failed = "failed"


TERMINAL_STATUSES = frozenset({JobStatus.completed, JobStatus.failed})


# --------------------------------------------------------------------------- tables


class User(SQLModel, table=True):
    """An account. Quota fields left empty fall back to the defaults in settings."""

    __tablename__ = "account"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    email: str = SQLField(unique=True, index=True, max_length=320)
    password_hash: str | None = SQLField(default=None, max_length=255)
    is_active: bool = True
    created_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    uploads_per_minute: int | None = None
    max_active_jobs: int | None = None
    bytes_per_day: int | None = SQLField(default=None, sa_column=Column(BigInteger, nullable=True))


class ApiKey(SQLModel, table=True):
    """An API key: shown once at creation, stored as a SHA-256 hash (keys are random)."""

    __tablename__ = "api_key"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    user_id: str = SQLField(foreign_key="account.id", index=True, max_length=36)
    name: str = SQLField(max_length=100)
    key_hash: str = SQLField(unique=True, max_length=64)
    prefix: str = SQLField(max_length=16)
    created_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    last_used_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    revoked_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class LoginFailure(SQLModel, table=True):
    """A login attempt that has not succeeded (yet), kept to slow password guessing per
    email and per client address, across API processes (`shared/logins.py`)."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_email_at", "email", "at"),
        Index("ix_login_failure_client_ip_at", "client_ip", "at"),
        Index("ix_login_failure_at", "at"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    email: str = SQLField(max_length=320)
    client_ip: str | None = SQLField(default=None, max_length=64)
    at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Upload(SQLModel, table=True):
    __table_args__ = (Index("ix_upload_owner_created", "owner_id", "created_at"),)

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    owner_id: str = SQLField(foreign_key="account.id", max_length=36)
    key: str = SQLField(max_length=512)
    filename: str = SQLField(max_length=1024)
    content_type: str = SQLField(max_length=255)
    size_bytes: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    expires_at: datetime = SQLField(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Multipart uploads (shared/multipart.py): storage's upload id and the part size
    # while parts arrive; `completed_at` once storage joined them into the object.
    multipart_id: str | None = SQLField(default=None, max_length=1024)
    part_size: int | None = SQLField(default=None, sa_column=Column(BigInteger, nullable=True))
    completed_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # ffprobe's description of the uploaded file (shared.upload_probe), or why it failed.
    probe: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON, nullable=True))
    probe_error: dict[str, Any] | None = SQLField(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    probed_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class UploadTally(SQLModel, table=True):
    """A user's uploads counted in time buckets: what the upload limits read.

    Counting the upload rows of the last minute and day costs a scan that grows with a
    user's traffic; these rows keep it bounded. Buckets of 1 s serve the per-minute limit
    and buckets of 60 s the daily volume. `last_at` (unix seconds) is the newest upload
    in the bucket: a bucket counts while that upload is inside the window, so a limit
    counts uploads at most one bucket older than its window, never fewer.
    """

    __tablename__ = "upload_tally"

    owner_id: str = SQLField(foreign_key="account.id", primary_key=True, max_length=36)
    span_s: int = SQLField(primary_key=True)
    start_s: int = SQLField(sa_column=Column(BigInteger, primary_key=True))
    uploads: int = 0
    bytes: int = SQLField(default=0, sa_column=Column(BigInteger, nullable=False))
    last_at: float = 0.0


class Job(SQLModel, table=True):
    __table_args__ = (
        Index("ix_job_created_id", "created_at", "id"),
        Index("ix_job_owner_created_id", "owner_id", "created_at", "id"),
        UniqueConstraint("owner_id", "idempotency_key", name="uq_job_owner_idempotency_key"),
        # The reaper's retention queries: outputs past their date, inputs of finished jobs.
        Index("ix_job_output_retention", "output_expired_at", "output_expires_at"),
        Index("ix_job_input_retention", "input_removed_at", "status"),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    owner_id: str = SQLField(foreign_key="account.id", max_length=36)
    upload_id: str = SQLField(foreign_key="upload.id", unique=True, max_length=36)
    idempotency_key: str | None = SQLField(default=None, max_length=255)
    dispatch_token: str = SQLField(default_factory=new_id, max_length=36)
    published_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    request_hash: str | None = SQLField(default=None, max_length=64)
    status: str = SQLField(default=JobStatus.queued, index=True, max_length=16)
    progress: int = 0
    attempts: int = 0
    created_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    started_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    finished_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    updated_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    input_key: str = SQLField(max_length=512)
    input_filename: str = SQLField(max_length=1024)
    input_size_bytes: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    options: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
    output_key: str | None = SQLField(default=None, max_length=512)
    output_size_bytes: int | None = SQLField(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )
    output_duration_s: float | None = None
    output_bitrate_kbps: int | None = None
    # Retention (shared/retention.py): when the MP3 is due to be deleted, when it was
    # found deleted or gone, and when the input was removed after the job finished.
    output_expires_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    output_expired_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    input_removed_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    output_encoded: bool | None = None
    output_loudness_lufs: float | None = None
    output_true_peak_db: float | None = None
    # A split job (shared/segments.py): how many segments it has and how many are done.
    segments_total: int | None = None
    segments_done: int = 0
    error_code: str | None = SQLField(default=None, max_length=64)
    error_message: str | None = SQLField(default=None, max_length=1024)
    # The request's `notify` as given (fields left out fall back to the account's settings);
    # None when the request had none.
    notify: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON, nullable=True))


class NotifySettings(SQLModel, table=True):
    """An account's notification defaults and its webhook signing secrets."""

    __tablename__ = "notify_settings"

    account_id: str = SQLField(foreign_key="account.id", primary_key=True, max_length=36)
    webhook_url: str | None = SQLField(default=None, max_length=2048)
    notify_email: bool = False
    webhook_secret: str | None = SQLField(default=None, max_length=128)
    # After a rotation the previous secret signs too, until previous_secret_until.
    previous_secret: str | None = SQLField(default=None, max_length=128)
    previous_secret_until: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class DeliveryStatus(StrEnum):
    pending = "pending"  # due at scheduled_at
    sending = "sending"  # claimed by a notifier at claimed_at
    succeeded = "succeeded"
    failed = "failed"


class Delivery(SQLModel, table=True):
    """One attempt to deliver one event on one channel (webhook or email).

    A failed attempt that may be retried schedules the next one as a new row, so the rows
    of an event are its delivery history. `event_id` is the Standard Webhooks `webhook-id`,
    the same on every attempt.
    """

    __table_args__ = (
        UniqueConstraint("event_id", "channel", "attempt", name="uq_delivery_event_attempt"),
        Index("ix_delivery_job_created", "job_id", "created_at"),
        Index("ix_delivery_due", "status", "scheduled_at"),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    job_id: str = SQLField(foreign_key="job.id", max_length=36)
    owner_id: str = SQLField(foreign_key="account.id", max_length=36)
    event_id: str = SQLField(max_length=64)
    event_type: str = SQLField(max_length=32)
    channel: str = SQLField(max_length=16)
    target: str = SQLField(max_length=2048)
    attempt: int = 1
    status: str = SQLField(default=DeliveryStatus.pending, max_length=16)
    created_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    scheduled_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    claimed_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    finished_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    status_code: int | None = None
    error: str | None = SQLField(default=None, max_length=512)
    next_retry_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    event_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


def output_expired(job: Job, now: datetime | None = None) -> bool:
    """The job's MP3 is gone: found missing, or past its retention date (a bucket
    lifecycle rule may delete it before the reaper gets to the row)."""
    if job.output_expired_at is not None:
        return True
    expires_at = as_utc(job.output_expires_at)
    return expires_at is not None and expires_at <= (now or utcnow())


# --------------------------------------------------------------------------- API schemas


def _refuse_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no email, file name or id needs one.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_refuse_nul)]
"""A string a client sends that is stored or looked up: 422 if it holds a NUL."""


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable snake_case code.")
    message: str = Field(description="A sentence a person understands.")


class ErrorResponse(BaseModel):
    """Every error body has this shape."""

    error: ErrorInfo

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "job_not_found", "message": "No job has that id."}}]
        }
    )


class UploadCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"filename": "holiday.mp4", "content_type": "video/mp4", "size_bytes": 1048576}
            ]
        },
    )

    filename: Text = Field(
        min_length=1, max_length=1024, description="The file's name on the user's disk."
    )
    content_type: Text = Field(
        min_length=1, max_length=255, description="video/*, audio/* or application/octet-stream."
    )
    size_bytes: int = Field(ge=0, description="Exact size of the file the client will PUT.")
    multipart: bool = Field(
        default=False,
        description="Upload in parts even below the server's multipart threshold.",
    )

    @field_validator("content_type")
    @classmethod
    def _normalise_content_type(cls, value: str) -> str:
        return value.strip().lower()


class UploadPublic(BaseModel):
    upload_id: str
    url: str | None = Field(
        description="Presigned URL to PUT the file's bytes to; null for a multipart upload."
    )
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="Headers the PUT must carry, exactly.")
    expires_at: datetime
    max_size_bytes: int
    multipart: MultipartPlan | None = Field(
        default=None,
        description="For a multipart upload: ask for part URLs with "
        "`POST /v1/uploads/{id}/parts`, then `POST /v1/uploads/{id}/complete`.",
    )


class JobNotify(BaseModel):
    """A job's notifications; a field left out takes the account's default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"webhook_url": "https://example.com/hooks", "email": True}]
        },
    )

    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="http(s) URL on a public address that receives signed job events; null for none.",
    )
    email: bool | None = Field(default=None, description="Email the account when the job finishes.")


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"upload_id": "0b6f3c1e-8d0a-4d55-9a43-3e5f8f9b2a10", "options": {"quality": 2}}
            ]
        },
    )

    upload_id: Text = Field(min_length=1, max_length=64)
    options: JobOptions = Field(default_factory=JobOptions)
    notify: JobNotify | None = Field(
        default=None,
        description="Who to tell when the job finishes; the account's defaults when left out.",
    )


class JobInput(BaseModel):
    filename: str
    size_bytes: int


class JobOutput(BaseModel):
    size_bytes: int
    duration_s: float
    bitrate_kbps: int | None
    expires_at: datetime | None = Field(
        default=None,
        description="When the MP3 is deleted from storage: its job's completion plus "
        "`V2M_OUTPUT_RETENTION_DAYS` (7 days unless the deployment sets otherwise). The job "
        "itself stays listed.",
    )
    expired: bool = Field(
        default=False,
        description="True once the MP3 is gone (its retention passed, or it was deleted): "
        "`GET /v1/jobs/{id}/download` then answers 410 `output_expired`.",
    )
    format: str = Field(default="mp3", description="The output's format (see options.format).")
    encoded: bool | None = Field(
        default=None, description="false when the source's audio was copied as it was."
    )
    loudness_lufs: float | None = Field(
        default=None, description="Integrated loudness of the output (EBU R128), LUFS."
    )
    true_peak_db: float | None = Field(default=None, description="True peak of the output, dBTP.")


class JobSegments(BaseModel):
    done: int
    total: int


class JobPublic(BaseModel):
    id: str
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    input: JobInput
    options: JobOptions
    output: JobOutput | None
    error: ErrorInfo | None
    attempts: int = Field(description="How many times a worker has started this job.")
    segments: JobSegments | None = Field(
        default=None,
        description="A long MP3 job split into segments that several workers encode at once: "
        "how many are done of how many; null for a job converted whole.",
    )

    @classmethod
    def from_job(cls, job: Job) -> JobPublic:
        output = None
        if job.status == JobStatus.completed and job.output_size_bytes is not None:
            output = JobOutput(
                size_bytes=job.output_size_bytes,
                duration_s=job.output_duration_s or 0.0,
                bitrate_kbps=job.output_bitrate_kbps,
                expires_at=as_utc(job.output_expires_at),
                expired=output_expired(job),
                format=job.options.get("format") or "mp3",
                encoded=job.output_encoded,
                loudness_lufs=job.output_loudness_lufs,
                true_peak_db=job.output_true_peak_db,
            )
        error = None
        if job.error_code is not None and job.status == JobStatus.failed:
            error = ErrorInfo(code=job.error_code, message=job.error_message or "")
        created = as_utc(job.created_at)
        assert created is not None
        return cls(
            id=job.id,
            status=JobStatus(job.status),
            progress=job.progress,
            created_at=created,
            started_at=as_utc(job.started_at),
            finished_at=as_utc(job.finished_at),
            input=JobInput(filename=job.input_filename, size_bytes=job.input_size_bytes),
            options=JobOptions.model_validate(job.options),
            output=output,
            error=error,
            attempts=job.attempts,
            segments=JobSegments(done=job.segments_done, total=job.segments_total)
            if job.segments_total
            else None,
        )


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


# --------------------------------------------------------------------------- auth schemas


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "ada@example.com", "password": "correct horse battery"}]
        },
    )

    email: Text = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class UserPublic(BaseModel):
    id: str
    email: str
    created_at: datetime

    @classmethod
    def from_user(cls, user: User) -> UserPublic:
        created = as_utc(user.created_at)
        assert created is not None
        return cls(id=user.id, email=user.email, created_at=created)


# --------------------------------------------------------------------------- notification schemas


class AccountPublic(BaseModel):
    id: str
    email: str
    webhook_url: str | None = Field(description="Default webhook for jobs created without one.")
    notify_email: bool = Field(description="Email by default when a job finishes.")


class AccountUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"webhook_url": "https://example.com/hooks", "notify_email": True}]
        },
    )

    webhook_url: str | None = Field(default=None, max_length=2048)
    notify_email: bool | None = None


class WebhookSecret(BaseModel):
    secret: str = Field(description="`whsec_<base64>`: the key webhook signatures are made with.")


class DeliveryPublic(BaseModel):
    id: str = Field(
        description="The attempt's id; POST …/deliveries/{id}/retry re-sends its event."
    )
    event_id: str = Field(description="The `webhook-id`: the same on every attempt of an event.")
    event_type: str
    channel: Literal["webhook", "email"]
    attempt: int
    status: DeliveryStatus
    created_at: datetime
    attempted_at: datetime | None
    url_host: str | None = Field(description="The webhook's host (None for email).")
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    error: str | None
    next_retry_at: datetime | None

    @classmethod
    def from_delivery(cls, row: Delivery) -> DeliveryPublic:
        created = as_utc(row.created_at)
        assert created is not None
        return cls(
            id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            channel="email" if row.channel == "email" else "webhook",
            attempt=row.attempt,
            status=DeliveryStatus(row.status),
            created_at=created,
            attempted_at=as_utc(row.finished_at or row.claimed_at),
            url_host=urlsplit(row.target).hostname if row.channel == "webhook" else None,
            status_code=row.status_code,
            error=row.error,
            next_retry_at=as_utc(row.next_retry_at),
        )


class DeliveriesPublic(BaseModel):
    items: list[DeliveryPublic]
