"""Reading what ffmpeg prints: its description of the input on stderr (``-loglevel
level+info``), its ``-progress`` lines on stdout, and the words that mark a cut-off input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from worker.ffmpeg.media import AudioStream, ProbeResult

_LEVEL = re.compile(r"\[(panic|fatal|error|warning|info|verbose|debug|trace)\] ")
_INPUT = re.compile(r"^Input #0, (.+?), from ")
_DURATION = re.compile(
    r"^  Duration: (?:(\d+):(\d\d):(\d\d(?:\.\d+)?)|N/A), .*bitrate: (?:(\d+) kb/s|N/A)"
)
_STREAM = re.compile(r"^  Stream #0:(\d+)[^:]*: (Audio|Video|Subtitle|Data|Attachment): (.*)$")
_DISPOSITION = re.compile(
    r"(?: \((?:default|forced|dub|original|comment|lyrics|karaoke|"
    r"hearing impaired|visual impaired|clean effects|attached pic|captions|descriptions|"
    r"metadata|dependent|still image)\))+$"
)
_LAYOUT_CHANNELS = {
    "mono": 1,
    "stereo": 2,
    "2.1": 3,
    "3.0": 3,
    "3.0(back)": 3,
    "4.0": 4,
    "quad": 4,
    "quad(side)": 4,
    "3.1": 4,
    "5.0": 5,
    "5.0(side)": 5,
    "4.1": 5,
    "5.1": 6,
    "5.1(side)": 6,
    "6.0": 6,
    "6.1": 7,
    "7.0": 7,
    "7.1": 8,
    "7.1(wide)": 8,
    "octagonal": 8,
    "downmix": 2,
}
# Lines a user's own metadata cannot forge: ffmpeg prints a value's extra lines without
# the level prefix, and its keys four spaces in, so "[info]   Stream" is always ffmpeg's.
_HEADER_END = ("Stream mapping:", "Output #0")


def split_level(line: str) -> tuple[str | None, str]:
    """(level, message) of a ``-loglevel level+…`` line; (None, line) when unprefixed."""
    match = _LEVEL.search(line)
    if match is None:
        return None, line
    return match.group(1), line[match.end() :]


def _audio_stream(index: int, description: str) -> AudioStream:
    # "aac (LC) (mp4a / 0x6134706D), 44100 Hz, 5.1, fltp, 172 kb/s (default)"
    parts = [_DISPOSITION.sub("", p.strip()) for p in description.split(", ")]
    codec = parts[0].split(" ", 1)[0] if parts else "unknown"
    rate = channels = 0
    bit_rate = None
    for part in parts[1:]:
        if part.endswith(" Hz") and part[:-3].isdigit():
            rate = int(part[:-3])
        elif part in _LAYOUT_CHANNELS:
            channels = _LAYOUT_CHANNELS[part]
        elif part.endswith(" channels") and part.split(" ", 1)[0].isdigit():
            channels = int(part.split(" ", 1)[0])
        elif part.endswith(" kb/s") and part.split(" ", 1)[0].isdigit():
            bit_rate = int(part.split(" ", 1)[0]) * 1000
        if channels == 0 and "(" in part and part.split("(", 1)[0] in _LAYOUT_CHANNELS:
            channels = _LAYOUT_CHANNELS[part.split("(", 1)[0]]
    return AudioStream(
        index=index, codec=codec, channels=channels, sample_rate=rate, bit_rate=bit_rate
    )


class InputHeader:
    """Reads ffmpeg's description of its input from stderr, line by line.

    ffmpeg prints it after opening the input and before converting anything, so the
    worker learns the format, duration and audio streams from the conversion itself
    instead of a separate ffprobe run over the network.
    """

    def __init__(self) -> None:
        self.format_name = ""
        self.duration_s: float | None = None
        self.bit_rate: int | None = None
        self.audio: list[AudioStream] = []
        self.has_video = False
        self.complete = False

    def feed(self, level: str | None, message: str) -> bool:
        """Take one line; True once the header is complete (on the line that ends it)."""
        if self.complete or level != "info":
            return False
        if match := _INPUT.match(message):
            self.format_name = match.group(1)
        elif match := _DURATION.match(message):
            hours, minutes, seconds, kbps = match.groups()
            if hours is not None:
                self.duration_s = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            self.bit_rate = int(kbps) * 1000 if kbps else None
        elif match := _STREAM.match(message):
            kind = match.group(2)
            if kind == "Audio":
                self.audio.append(_audio_stream(int(match.group(1)), match.group(3)))
            elif kind == "Video" and "attached pic" not in match.group(3):
                self.has_video = True
        elif message.startswith(_HEADER_END) and self.format_name:
            self.complete = True
            return True
        return False

    def result(self) -> ProbeResult:
        audio = self.audio
        if not self.has_video and self.duration_s is not None:
            # Audio only: the container's duration is the audio's (used to spot cut-off files).
            audio = [replace(stream, duration_s=self.duration_s) for stream in audio]
        return ProbeResult(
            format_name=self.format_name,
            duration_s=self.duration_s,
            bit_rate=self.bit_rate,
            audio=list(audio),
        )


def parse_progress_line(line: str) -> float | None:
    """Seconds of output written, from one ``-progress`` line, else None."""
    key, _, value = line.strip().partition("=")
    if key in ("out_time_us", "out_time_ms"):  # both are microseconds in ffmpeg
        try:
            micros = int(value)
        except ValueError:
            return None
        return micros / 1_000_000 if micros >= 0 else None
    return None


def progress_percent(out_time_s: float, duration_s: float | None) -> int | None:
    if not duration_s or duration_s <= 0:
        return None
    return max(0, min(99, int(out_time_s * 100 / duration_s)))


# What ffmpeg says when the input stops before its container says it should.
TRUNCATION_MARKERS = ("partial file", "Truncating packet", "truncated")


def looks_truncated(stderr_lines: Iterable[str]) -> bool:
    return any(marker in line for line in stderr_lines for marker in TRUNCATION_MARKERS)
