"""What an uploaded file holds, for the page (tags to prefill, a cover to preview, the
duration for the trim) and for checking a job's trim when it is created.

ffprobe reads the object through a short-lived presigned GET URL, sandboxed as in the
worker (``shared.media``), once per upload: the facts, or the error that stopped it, are
stored on the upload row and answered from there afterwards. A hostile or garbage file is
a MediaError (422, stored); a probe that ran out of time or found storage unreachable is
503 and not stored, so a later call tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session

from shared import uploads
from shared.config import Settings
from shared.errors import (
    BusyError,
    InvalidRequestError,
    MediaError,
    NotFoundError,
    StorageError,
    TransientTranscodeError,
)
from shared.media import probe as media_probe
from shared.media.facts import ProbeResult
from shared.models import Upload, utcnow
from shared.options import JobOptions
from shared.storage import Storage

MAX_CHAPTERS = 500  # listed for the page; a file with more lists its first ones
URL_MARGIN_S = 60  # the presigned URL outlives the probe's time limit by this much


class SourceAudio(BaseModel):
    codec: str
    channels: int
    sample_rate_hz: int
    bit_rate: int | None = None


class SourceTags(BaseModel):
    """The source's own tags; a job carries them into the output unless its `tags` replace them."""

    title: str | None = None
    artist: str | None = None
    album: str | None = None
    album_artist: str | None = None
    date: str | None = None
    track: str | None = None
    genre: str | None = None
    comment: str | None = None


class SourceChapter(BaseModel):
    start_s: float
    end_s: float
    title: str


class UploadProbePublic(BaseModel):
    """ffprobe's description of an uploaded file."""

    upload_id: str
    format_name: str = Field(description="The container, as ffprobe names it.")
    duration_s: float | None = Field(description="Length in seconds; null when unknown.")
    bit_rate: int | None = None
    audio: SourceAudio | None = Field(description="The first audio stream; null when none.")
    video_codec: str | None = Field(description="The moving video's codec; null for audio.")
    has_cover: bool = Field(description="The file has an attached picture (GET …/cover).")
    tags: SourceTags
    chapters: list[SourceChapter] = Field(description="At most the first 500.")
    probed_at: datetime

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "upload_id": "0b6f3c1e-8d0a-4d55-9a43-3e5f8f9b2a10",
                    "format_name": "matroska,webm",
                    "duration_s": 1834.2,
                    "bit_rate": 2400000,
                    "audio": {"codec": "aac", "channels": 2, "sample_rate_hz": 48000},
                    "video_codec": "h264",
                    "has_cover": True,
                    "tags": {"title": "Episode 12", "artist": "Ada", "date": "2026"},
                    "chapters": [{"start_s": 0, "end_s": 612.5, "title": "Intro"}],
                    "probed_at": "2026-12-07T18:40:00Z",
                }
            ]
        }
    }


class ProbeUnavailableError(StorageError):
    """The probe could not run to the end now (timeout, storage); a later call may succeed."""

    code = "probe_unavailable"


_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


@contextmanager
def _slot(settings: Settings) -> Iterator[None]:
    """One of ``probe_concurrency`` probes of this process; BusyError when all are taken."""
    with _slots_lock:
        slots = _slots.setdefault(
            settings.probe_concurrency, threading.BoundedSemaphore(settings.probe_concurrency)
        )
    if not slots.acquire(blocking=False):
        raise BusyError(
            "Too many files are being probed right now; try again in a moment.",
            retry_after_s=2,
            code="probe_busy",
        )
    try:
        yield
    finally:
        slots.release()


def _stored(result: ProbeResult) -> dict[str, Any]:
    """The facts kept on the upload row: the public ones and the cover stream's place."""
    audio = result.first_audio if result.audio else None
    video = result.moving_video
    cover = result.cover
    return {
        "format_name": result.format_name,
        "duration_s": result.duration_s,
        "bit_rate": result.bit_rate,
        "audio": None
        if audio is None
        else {
            "codec": audio.codec,
            "channels": audio.channels,
            "sample_rate_hz": audio.sample_rate,
            "bit_rate": audio.bit_rate,
        },
        "video_codec": video.codec if video else None,
        "cover_stream": None if cover is None else {"index": cover.index, "codec": cover.codec},
        "tags": dict(result.tags),
        "chapters": [
            {"start_s": c.start_s, "end_s": c.end_s, "title": c.title}
            for c in result.chapters[:MAX_CHAPTERS]
        ],
    }


def public(upload: Upload) -> UploadProbePublic:
    facts = upload.probe or {}
    return UploadProbePublic(
        upload_id=upload.id,
        format_name=facts.get("format_name", ""),
        duration_s=facts.get("duration_s"),
        bit_rate=facts.get("bit_rate"),
        audio=facts.get("audio"),
        video_codec=facts.get("video_codec"),
        has_cover=facts.get("cover_stream") is not None,
        tags=SourceTags(**facts.get("tags", {})),
        chapters=[SourceChapter(**c) for c in facts.get("chapters", [])],
        probed_at=upload.probed_at or utcnow(),
    )


def _signed_url(storage: Storage, settings: Settings, upload: Upload) -> str:
    uploads.check_arrived(storage, upload)
    return storage.presign_internal_get(
        upload.key, expires_s=int(settings.probe_timeout_s) + URL_MARGIN_S
    )


def probe_upload(
    *, session: Session, storage: Storage, settings: Settings, upload: Upload
) -> UploadProbePublic:
    """The upload's facts, probed on the first call; the stored MediaError on a file that
    is not media; ConflictError ``upload_incomplete`` before the bytes have arrived."""
    if upload.probe is not None:
        return public(upload)
    if upload.probe_error is not None:
        raise MediaError(upload.probe_error["message"], code=upload.probe_error["code"])
    url = _signed_url(storage, settings, upload)
    with _slot(settings):
        try:
            result = media_probe.probe(
                settings.ffprobe_bin,
                url,
                timeout_s=settings.probe_timeout_s,
                memory_mb=settings.ffmpeg_memory_limit_mb,
            )
        except MediaError as exc:
            upload.probe_error = {"code": exc.code, "message": exc.message}
            upload.probed_at = utcnow()
            session.add(upload)
            session.commit()
            raise
        except (TransientTranscodeError, StorageError) as exc:
            raise ProbeUnavailableError(
                "The file could not be read in time; try again shortly.", detail=exc.detail
            ) from exc
    upload.probe = _stored(result)
    upload.probed_at = utcnow()
    session.add(upload)
    session.commit()
    session.refresh(upload)
    return public(upload)


def upload_cover(
    *, session: Session, storage: Storage, settings: Settings, upload: Upload
) -> tuple[bytes, str]:
    """The source's attached picture and its Content-Type; NotFoundError ``no_cover``."""
    probe_upload(session=session, storage=storage, settings=settings, upload=upload)
    cover = (upload.probe or {}).get("cover_stream")
    if cover is None:
        raise NotFoundError("The file has no cover picture.", code="no_cover")
    url = _signed_url(storage, settings, upload)
    with _slot(settings):
        try:
            return media_probe.extract_cover(
                settings.ffmpeg_bin,
                url,
                stream_index=int(cover["index"]),
                codec=str(cover["codec"]),
                max_bytes=settings.cover_max_bytes,
                timeout_s=settings.probe_timeout_s,
                memory_mb=settings.ffmpeg_memory_limit_mb,
            )
        except (TransientTranscodeError, StorageError) as exc:
            raise ProbeUnavailableError(
                "The cover picture could not be read in time; try again shortly.",
                detail=exc.detail,
            ) from exc


def check_trim(upload: Upload, options: JobOptions) -> None:
    """A trim starting at or past a probed upload's end is refused at creation (422 naming
    ``options.trim.start_s``); an upload not probed yet is checked by the worker."""
    start = options.trim.start_s if options.trim else None
    duration = (upload.probe or {}).get("duration_s")
    if start is None or duration is None or start < duration:
        return
    raise InvalidRequestError(
        f"The request is not valid: options.trim.start_s: the trim starts at {start:g} s, "
        f"but the file is only {duration:.2f} s long.",
        code="trim_out_of_range",
    )
