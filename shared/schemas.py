"""The v1 API's request/response schemas for errors, uploads and jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shared.models import Job, JobStatus, as_utc, output_expired
from shared.multipart_schemas import MultipartPlan
from shared.options import JobOptions


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
