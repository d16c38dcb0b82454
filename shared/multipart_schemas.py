"""Request and response schemas of the multipart upload routes (v1, docs/API in README)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# S3's own limits: part numbers run from 1 to 10,000.
MAX_PARTS = 10_000
MAX_PART_URLS_PER_CALL = 100
# A completion names every part with its ETag: about 60 bytes a part.
MAX_COMPLETE_BODY_BYTES = 1024 * 1024


class MultipartPlan(BaseModel):
    part_size: int = Field(description="Bytes in every part but the last.")
    part_count: int = Field(description="Parts the file is cut into, numbered from 1.")


class PartUrlsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"part_numbers": [1, 2, 3]}]}
    )

    part_numbers: list[int] = Field(
        min_length=1,
        max_length=MAX_PART_URLS_PER_CALL,
        description="Part numbers to presign, at most 100 a call.",
    )


class PartUrl(BaseModel):
    part_number: int
    url: str = Field(description="Presigned URL to PUT this part's bytes to; short-lived.")
    headers: dict[str, str] = Field(description="Headers the PUT must carry, exactly.")


class PartUrlsPublic(BaseModel):
    parts: list[PartUrl]


class StoredPart(BaseModel):
    part_number: int
    size_bytes: int
    etag: str


class StoredPartsPublic(BaseModel):
    parts: list[StoredPart] = Field(description="Parts storage holds, by part number.")


class CompletedPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(
        min_length=1, max_length=256, description="The ETag storage answered the part's PUT with."
    )


class CompleteRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"parts": [{"part_number": 1, "etag": '"3858f62230ac3c915f300c664312c11f"'}]}
            ]
        },
    )

    parts: list[CompletedPart] = Field(min_length=1, max_length=MAX_PARTS)


class UploadCompletedPublic(BaseModel):
    upload_id: str
    filename: str
    content_type: str
    size_bytes: int
    completed_at: datetime
