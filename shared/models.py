"""Database tables, their enums and helpers. The v1 API's schemas are in shared/schemas.py
and shared/account_schemas.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel


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
