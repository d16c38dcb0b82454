"""What a job's output should be: format, encoder settings, trim, loudness, tags, cover, chapters.

`FORMATS` says, per output format, its file extension and Content-Type and which encoder
settings make sense for it; `JobOptions` refuses the others with a message naming the field
(FastAPI turns that into a 422). The worker's ffmpeg arguments per format live in
``worker.ffmpeg.formats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

OutputFormat = Literal["mp3", "m4a", "opus", "flac", "wav", "mp4"]
EncoderSetting = Literal["bitrate_kbps", "quality", "sample_rate_hz", "channels"]
CoverChoice = Literal["source", "frame", "none"]


@dataclass(frozen=True)
class FormatInfo:
    extension: str
    content_type: str
    settings: frozenset[EncoderSetting]  # the encoder settings this format takes
    cover: bool  # the container can carry a cover picture


FORMATS: dict[str, FormatInfo] = {
    "mp3": FormatInfo(
        ".mp3",
        "audio/mpeg",
        frozenset({"bitrate_kbps", "quality", "sample_rate_hz", "channels"}),
        cover=True,
    ),
    "m4a": FormatInfo(
        ".m4a", "audio/mp4", frozenset({"bitrate_kbps", "sample_rate_hz", "channels"}), cover=True
    ),
    # Opus always runs at 48 kHz, whatever the input's rate. Its cover is a Vorbis comment
    # the worker writes after encoding (ffmpeg's Ogg muxer takes no picture).
    "opus": FormatInfo(".opus", "audio/ogg", frozenset({"bitrate_kbps", "channels"}), cover=True),
    "flac": FormatInfo(
        ".flac", "audio/flac", frozenset({"sample_rate_hz", "channels"}), cover=True
    ),
    "wav": FormatInfo(".wav", "audio/wav", frozenset({"sample_rate_hz", "channels"}), cover=False),
    "mp4": FormatInfo(
        ".mp4", "video/mp4", frozenset({"bitrate_kbps", "sample_rate_hz", "channels"}), cover=False
    ),
}


def format_info(name: str | None) -> FormatInfo:
    """The format's facts; jobs stored without a format are MP3."""
    return FORMATS[name or "mp3"]


class Trim(BaseModel):
    """The part of the input to keep, in seconds from its start, with optional fades."""

    model_config = ConfigDict(extra="forbid")

    start_s: float | None = Field(default=None, ge=0, description="Start (default: 0).")
    end_s: float | None = Field(default=None, gt=0, description="End (default: the input's end).")
    fade_in_s: float | None = Field(default=None, gt=0, le=60, description="Fade-in length.")
    fade_out_s: float | None = Field(default=None, gt=0, le=60, description="Fade-out length.")

    @model_validator(mode="after")
    def _start_before_end(self) -> Trim:
        if self.start_s is not None and self.end_s is not None and self.start_s >= self.end_s:
            raise ValueError("trim.start_s must be before trim.end_s")
        return self


class Normalize(BaseModel):
    """Two-pass EBU R128 loudness normalisation (measure, then apply)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"target_lufs": -16}]}
    )

    target_lufs: float = Field(
        ge=-30, le=-5, description="Integrated loudness to reach: -16 podcasts, -14 streaming."
    )
    true_peak_db: float = Field(default=-1.0, ge=-9, le=0, description="True-peak ceiling, dBTP.")


class Tags(BaseModel):
    """Tags written into the output; fields left out keep the source's own."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=1024)
    artist: str | None = Field(default=None, max_length=1024)
    album: str | None = Field(default=None, max_length=1024)
    album_artist: str | None = Field(default=None, max_length=1024)
    date: str | None = Field(default=None, max_length=32)
    track: str | None = Field(default=None, max_length=16, pattern=r"^\d{1,4}(/\d{1,4})?$")
    genre: str | None = Field(default=None, max_length=255)
    comment: str | None = Field(default=None, max_length=4096)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("tags cannot contain NUL characters")
        return value


class JobOptions(BaseModel):
    """How to convert. Leave everything out for an MP3 at VBR quality 2 at the source's rate."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"bitrate_kbps": 192, "channels": 2},
                {"quality": 2},
                {"format": "m4a", "bitrate_kbps": 128, "normalize": {"target_lufs": -16}},
                {"format": "opus", "trim": {"start_s": 30, "end_s": 90, "fade_out_s": 2}},
                {"format": "mp3", "tags": {"title": "Episode 12", "artist": "Ada"}},
            ]
        },
    )

    format: OutputFormat = Field(
        default="mp3",
        description="mp3, m4a (AAC), opus (Ogg Opus), flac, wav (PCM 16-bit) or mp4 "
        "(H.264 video + AAC audio).",
    )
    bitrate_kbps: int | None = Field(
        default=None, ge=64, le=320, description="Constant bitrate in kbit/s (64..320)."
    )
    quality: int | None = Field(
        default=None, ge=0, le=9, description="LAME VBR quality, 0 (best) .. 9 (smallest); mp3."
    )
    sample_rate_hz: Literal[22050, 32000, 44100, 48000] | None = Field(
        default=None, description="Output sample rate; default keeps 44.1/48 kHz as the source."
    )
    channels: Literal[1, 2] | None = Field(
        default=None, description="1 = mono, 2 = stereo; default stereo (mono sources stay mono)."
    )
    trim: Trim | None = Field(default=None, description="Keep only this part of the input.")
    normalize: Normalize | None = Field(default=None, description="Reach a loudness target.")
    tags: Tags | None = Field(default=None, description="Tags to write over the source's.")
    cover: CoverChoice = Field(
        default="source",
        description="source: the input's own picture, if any; frame: a video frame; none.",
    )
    cover_at_s: float | None = Field(
        default=None, ge=0, description="With cover=frame: when to take it (default 10 % in)."
    )
    chapters: bool = Field(default=True, description="Carry the input's chapters over.")

    @model_validator(mode="after")
    def _consistent(self) -> JobOptions:
        if self.bitrate_kbps is not None and self.quality is not None:
            raise ValueError("give either bitrate_kbps (CBR) or quality (VBR), not both")
        info = FORMATS[self.format]
        for name in ("bitrate_kbps", "quality", "sample_rate_hz", "channels"):
            if getattr(self, name) is not None and name not in info.settings:
                raise ValueError(f"{name} does not apply to format {self.format}")
        if self.cover == "frame" and not info.cover:
            raise ValueError(f"cover 'frame' does not apply to format {self.format}")
        if self.cover_at_s is not None and self.cover != "frame":
            raise ValueError("cover_at_s applies only with cover 'frame'")
        return self

    @property
    def changes_audio(self) -> bool:
        """An option that changes the audio samples, so a stream copy cannot honour it."""
        return any(
            value is not None
            for value in (
                self.bitrate_kbps,
                self.quality,
                self.sample_rate_hz,
                self.channels,
                self.trim,
                self.normalize,
            )
        )
