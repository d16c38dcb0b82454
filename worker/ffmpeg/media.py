"""What ffmpeg and ffprobe say about a media file: its format, duration and audio streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    sample_rate: int
    bit_rate: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class ProbeResult:
    format_name: str
    duration_s: float | None
    bit_rate: int | None
    audio: list[AudioStream] = field(default_factory=list)

    @property
    def first_audio(self) -> AudioStream:
        return self.audio[0]


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def parse_probe(data: dict[str, Any]) -> ProbeResult:
    """A ProbeResult from ffprobe's ``-of json`` output."""
    fmt = data.get("format") or {}
    streams = []
    for s in data.get("streams") or []:
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
            )
        )
    bit_rate = _float(fmt.get("bit_rate"))
    return ProbeResult(
        format_name=str(fmt.get("format_name", "")),
        duration_s=_float(fmt.get("duration")),
        bit_rate=int(bit_rate) if bit_rate else None,
        audio=streams,
    )
