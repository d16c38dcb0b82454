"""What ffmpeg and ffprobe say about a media file: its format, duration, streams, tags and
chapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The tags a job's options can set, read from the source so a client can offer them.
TAG_KEYS = ("title", "artist", "album", "album_artist", "date", "track", "genre", "comment")
TAG_MAX_CHARS = 1024  # a tag longer than this is cut: it prefills a form field


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    sample_rate: int
    bit_rate: int | None = None
    duration_s: float | None = None
    start_s: float | None = None  # its first timestamp (may be negative)


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    attached_pic: bool  # a cover picture, not moving video


@dataclass(frozen=True)
class Chapter:
    start_s: float
    end_s: float
    title: str


@dataclass(frozen=True)
class Loudness:
    """EBU R128 integrated loudness (LUFS), loudness range (LU) and true peak (dBTP)."""

    integrated_lufs: float
    range_lu: float
    true_peak_db: float | None  # None for digital silence


@dataclass(frozen=True)
class ProbeResult:
    format_name: str
    duration_s: float | None
    bit_rate: int | None
    audio: list[AudioStream] = field(default_factory=list)
    video: list[VideoStream] = field(default_factory=list)
    chapters: list[Chapter] = field(default_factory=list)
    start_s: float | None = None  # the container's first timestamp (may be negative)
    tags: dict[str, str] = field(default_factory=dict)  # TAG_KEYS only, lower-case keys

    @property
    def cover(self) -> VideoStream | None:
        """The attached picture (cover art), if the file has one."""
        return next((v for v in self.video if v.attached_pic), None)

    @property
    def moving_video(self) -> VideoStream | None:
        return next((v for v in self.video if not v.attached_pic), None)

    @property
    def first_audio(self) -> AudioStream:
        return self.audio[0]


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _signed(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _tags(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> dict[str, str]:
    """The container's tags, then the first audio stream's (Ogg keeps its Vorbis comments
    on the stream); keys matched without case (Vorbis comments are often upper-case)."""
    found: dict[str, str] = {}
    audio = next((s for s in streams if s.get("codec_type") == "audio"), {})
    for tags in (fmt.get("tags") or {}, audio.get("tags") or {}):
        for key, value in tags.items():
            name = str(key).lower()
            if name in TAG_KEYS and name not in found and str(value).strip():
                found[name] = str(value).replace("\x00", "").strip()[:TAG_MAX_CHARS]
    return found


def parse_probe(data: dict[str, Any]) -> ProbeResult:
    """A ProbeResult from ffprobe's ``-of json`` output."""
    fmt = data.get("format") or {}
    streams = []
    video = []
    for s in data.get("streams") or []:
        if s.get("codec_type") == "video":
            video.append(
                VideoStream(
                    index=int(s.get("index", 0)),
                    codec=str(s.get("codec_name", "unknown")),
                    attached_pic=bool((s.get("disposition") or {}).get("attached_pic")),
                )
            )
        if s.get("codec_type") != "audio":
            continue
        streams.append(
            AudioStream(
                index=int(s.get("index", 0)),
                codec=str(s.get("codec_name", "unknown")),
                channels=int(s.get("channels") or 0),
                sample_rate=int(_float(s.get("sample_rate")) or 0),
                bit_rate=int(_float(s.get("bit_rate")) or 0) or None,
                duration_s=_float(s.get("duration")),
                start_s=_signed(s.get("start_time")),
            )
        )
    bit_rate = _float(fmt.get("bit_rate"))
    return ProbeResult(
        format_name=str(fmt.get("format_name", "")),
        duration_s=_float(fmt.get("duration")),
        bit_rate=int(bit_rate) if bit_rate else None,
        audio=streams,
        video=video,
        start_s=_signed(fmt.get("start_time")),
        chapters=[
            Chapter(
                start_s=_float(c.get("start_time")) or 0.0,
                end_s=_float(c.get("end_time")) or 0.0,
                title=str((c.get("tags") or {}).get("title", "")),
            )
            for c in data.get("chapters") or []
        ],
        tags=_tags(fmt, list(data.get("streams") or [])),
    )
