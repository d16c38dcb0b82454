"""The benchmark's inputs, made with ffmpeg's lavfi sources and cached in .bench-cache/.

Long inputs are a short encoded segment looped with stream copy (``-stream_loop``), which
takes seconds instead of the minutes a long 720p encode would; the result is an ordinary
faststart MP4/M4A/MP3 whose audio is continuous.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"

VIDEO_720P = ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25"]
# A tone with a little noise: LAME works on it like on speech or music, not on pure silence.
AUDIO = [
    "-f",
    "lavfi",
    "-i",
    "aevalsrc=0.4*sin(2*PI*440*t)+0.2*sin(2*PI*1234*t)+0.05*(random(0)-0.5):s=48000:c=stereo",
]


@dataclass(frozen=True)
class Input:
    path: Path
    filename: str
    content_type: str
    duration_s: float

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def _ffmpeg(args: list[str], out: Path) -> None:
    tmp = out.with_name(f".{out.name}.part{out.suffix}")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(tmp)],
        check=True,
        timeout=1800,
    )
    tmp.rename(out)


def _segment_720p(seconds: int) -> Path:
    out = CACHE / f"seg-720p-{seconds}s.mp4"
    if not out.exists():
        _ffmpeg(
            [
                *VIDEO_720P,
                *AUDIO,
                "-t",
                str(seconds),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-b:v",
                "6M",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-movflags",
                "+faststart",
            ],
            out,
        )
    return out


def _looped(source: Path, loops: int, out: Path, extra: list[str] | None = None) -> Path:
    if not out.exists():
        _ffmpeg(
            ["-stream_loop", str(loops - 1), "-i", str(source), "-c", "copy", *(extra or [])],
            out,
        )
    return out


def video_720p(seconds: int) -> Input:
    """A 720p H.264/AAC faststart MP4 (about 6.3 Mbit/s) of ``seconds``."""
    CACHE.mkdir(exist_ok=True)
    if seconds <= 60:
        path = _segment_720p(seconds)
    else:
        assert seconds % 60 == 0
        path = _looped(
            _segment_720p(60),
            seconds // 60,
            CACHE / f"video-720p-{seconds}s.mp4",
            ["-movflags", "+faststart"],
        )
    return Input(path, f"holiday-{seconds}s.mp4", "video/mp4", float(seconds))


def clip_5s() -> Input:
    return video_720p(5)


def audio_m4a(seconds: int) -> Input:
    """AAC 128 kbit/s stereo in M4A (a podcast or lecture)."""
    CACHE.mkdir(exist_ok=True)
    seg = CACHE / "seg-audio-60s.m4a"
    if not seg.exists():
        _ffmpeg([*AUDIO, "-t", "60", "-c:a", "aac", "-b:a", "128k"], seg)
    path = _looped(seg, seconds // 60, CACHE / f"audio-{seconds}s.m4a", ["-movflags", "+faststart"])
    return Input(path, f"lecture-{seconds}s.m4a", "audio/mp4", float(seconds))


def mp3(seconds: int) -> Input:
    """An MP3 (LAME VBR q4): the input of the stream-copy figure."""
    CACHE.mkdir(exist_ok=True)
    seg = CACHE / "seg-60s.mp3"
    if not seg.exists():
        _ffmpeg([*AUDIO, "-t", "60", "-c:a", "libmp3lame", "-q:a", "4"], seg)
    path = _looped(seg, seconds // 60, CACHE / f"song-{seconds}s.mp3")
    return Input(path, f"song-{seconds}s.mp3", "audio/mpeg", float(seconds))


def big_video(target_bytes: int) -> Input:
    """A 720p MP4 of about ``target_bytes`` (1 GB-class for the throttled-storage figure)."""
    seg = _segment_720p(60)
    loops = max(1, round(target_bytes / seg.stat().st_size))
    path = _looped(seg, loops, CACHE / f"big-{loops}x60s.mp4", ["-movflags", "+faststart"])
    return Input(path, f"wedding-{loops}min.mp4", "video/mp4", 60.0 * loops)
