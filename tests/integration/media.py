"""Sample media made with ffmpeg's lavfi sources: nothing binary is committed."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

VIDEO = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=15"]


def _tone(freq: int, rate: int = 44100, layout: str = "mono") -> list[str]:
    return [
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={freq}:sample_rate={rate},aformat=channel_layouts={layout}",
    ]


@dataclass(frozen=True)
class Sample:
    name: str
    filename: str
    content_type: str
    args: list[str]


SECONDS = "3"
# The tags of the "mp3_tagged_cover" sample, which also carries a 64x64 PNG cover.
SOURCE_TAGS = {
    "title": "Tagged song",
    "artist": "Test Artist",
    "album": "Test Album",
    "album_artist": "Album Artist",
    "date": "2024",
    "track": "7",
    "genre": "Podcast",
    "comment": "A comment",
}

SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in [
        Sample(
            "mp4_h264_aac",
            "clip.mp4",
            "video/mp4",
            [
                *VIDEO,
                *_tone(440, layout="stereo"),
                "-t",
                SECONDS,
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-movflags",
                "+faststart",
            ],
        ),
        Sample(
            "mp4_moov_at_end",
            "moov-at-end.mp4",
            "video/mp4",
            [
                *VIDEO,
                *_tone(440, layout="stereo"),
                "-t",
                SECONDS,
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
            ],
        ),
        Sample(
            "mov_pcm",
            "camera.mov",
            "video/quicktime",
            [
                *VIDEO,
                *_tone(330, 48000, "stereo"),
                "-t",
                SECONDS,
                "-c:v",
                "mpeg4",
                "-c:a",
                "pcm_s16le",
            ],
        ),
        Sample(
            "mkv_ac3_51",
            "surround.mkv",
            "video/x-matroska",
            [*VIDEO, *_tone(220, 48000, "5.1"), "-t", SECONDS, "-c:v", "mpeg4", "-c:a", "ac3"],
        ),
        Sample(
            "webm_vp9_opus",
            "clip.webm",
            "video/webm",
            [
                *VIDEO,
                *_tone(550, 48000, "stereo"),
                "-t",
                SECONDS,
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-b:v",
                "100k",
                "-c:a",
                "libopus",
            ],
        ),
        Sample(
            "avi_mp3",
            "old.avi",
            "video/x-msvideo",
            [
                *VIDEO,
                *_tone(440, 44100, "stereo"),
                "-t",
                SECONDS,
                "-c:v",
                "mpeg4",
                "-c:a",
                "libmp3lame",
            ],
        ),
        Sample(
            "mpegts",
            "broadcast.ts",
            "video/mp2t",
            [
                *VIDEO,
                *_tone(440, 48000, "stereo"),
                "-t",
                SECONDS,
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-f",
                "mpegts",
            ],
        ),
        Sample(
            "flv",
            "stream.flv",
            "video/x-flv",
            [
                *VIDEO,
                *_tone(440, 44100, "mono"),
                "-t",
                SECONDS,
                "-c:v",
                "flv1",
                "-c:a",
                "libmp3lame",
                "-ar",
                "44100",
            ],
        ),
        Sample(
            "two_audio_tracks",
            "dub.mkv",
            "video/x-matroska",
            [
                *VIDEO,
                *_tone(440, 44100, "mono"),
                *_tone(880, 48000, "stereo"),
                "-t",
                SECONDS,
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-map",
                "2:a",
                "-c:v",
                "mpeg4",
                "-c:a",
                "aac",
            ],
        ),
        Sample(
            "short_clip",
            "blink.mp4",
            "video/mp4",
            [
                *VIDEO,
                *_tone(440, layout="stereo"),
                "-t",
                "0.6",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
            ],
        ),
        Sample(
            "mp3_audio",
            "song.mp3",
            "audio/mpeg",
            [*_tone(440, 44100, "stereo"), "-t", SECONDS, "-c:a", "libmp3lame", "-q:a", "4"],
        ),
        Sample(
            "mp3_tagged_cover",
            "tagged.mp3",
            "audio/mpeg",
            [
                *_tone(440, 44100, "stereo"),
                *["-f", "lavfi", "-i", "color=c=orange:s=64x64"],
                *["-t", SECONDS, "-map", "0:a", "-map", "1:v", "-frames:v", "1"],
                *["-c:a", "libmp3lame", "-q:a", "4", "-c:v", "png"],
                *["-disposition:v", "attached_pic"],
                *[
                    arg
                    for key, value in SOURCE_TAGS.items()
                    for arg in ("-metadata", f"{key}={value}")
                ],
            ],
        ),
        Sample(
            "no_audio",
            "silent-film.mp4",
            "video/mp4",
            [*VIDEO, "-t", SECONDS, "-c:v", "libx264", "-preset", "ultrafast"],
        ),
        Sample(
            # About 12 MB in 6 s (noisy frames at a fixed bitrate): three 5 MiB parts.
            "mp4_12mb",
            "camera.mp4",
            "video/mp4",
            [
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
                *_tone(440, layout="stereo"),
                "-t",
                "6",
                "-vf",
                "noise=alls=60:allf=t",
                "-c:v",
                "mpeg4",
                *("-b:v", "16M", "-minrate", "16M", "-maxrate", "16M", "-bufsize", "4M"),
                "-c:a",
                "aac",
                "-movflags",
                "+faststart",
            ],
        ),
        Sample(
            "long_audio",
            "lecture.m4a",
            "audio/mp4",
            [*_tone(440, 44100, "stereo"), "-t", "900", "-c:a", "aac", "-b:a", "64k"],
        ),
    ]
}


def make(sample: Sample, directory: Path) -> Path:
    path = directory / f"{sample.name}-{sample.filename}"
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *sample.args, str(path)],
            check=True,
            timeout=300,
        )
    return path


def probe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration,bit_rate:stream=index,codec_type,codec_name,channels,sample_rate,duration",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    data: dict[str, object] = json.loads(out)
    return data


def audio_duration(path: Path) -> float:
    """Duration of the first audio stream, decoded (what a listener hears)."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
        text=True,
    ).stdout
    start, end = float("inf"), 0.0
    for line in out.splitlines():
        parts = [p for p in line.split(",") if p and p != "N/A"]
        if len(parts) == 2:
            pts, dur = float(parts[0]), float(parts[1])
            start, end = min(start, pts), max(end, pts + dur)
    return max(0.0, end - start) if end else 0.0


def decoded_md5(path: Path) -> str:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "md5", "-"],
        check=True,
        capture_output=True,
        timeout=60,
        text=True,
    ).stdout.strip()


def _longer(base: str, name: str, filename: str, seconds: str) -> Sample:
    """The same recipe as ``base`` with another duration (for cutting files in half)."""
    args = list(SAMPLES[base].args)
    args[args.index("-t") + 1] = seconds
    return Sample(name, filename, SAMPLES[base].content_type, args)


for _base, _name, _filename in (
    ("mp4_h264_aac", "mp4_h264_aac_long", "long.mp4"),
    ("mp4_moov_at_end", "mp4_moov_at_end_long", "long-moov-at-end.mp4"),
):
    SAMPLES[_name] = _longer(_base, _name, _filename, "12")
