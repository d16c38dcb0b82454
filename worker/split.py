"""Split jobs, the pure part: which jobs split, into which ranges, and how the encoded
segments are cut and joined into one gapless MP3 (docs/ARCHITECTURE.md, "Split jobs").

Segment boundaries fall on multiples of 1152 samples (one MPEG-1 Layer III frame) of
the input, whose rate the output keeps. Segment i encodes its range with
``PREROLL_FRAMES`` frames of the input before it and ``POSTROLL_FRAMES`` after, with the
bit reservoir off. Every encode of ours delays the audio by the same number of samples,
so frame ``PREROLL_FRAMES`` of segment i starts exactly where the last kept frame of
segment i-1 ends: the join keeps whole frames and drops the rest. The encoder and
decoder warm up in the pre-roll, and each frame carries its own bits, so no frame's
data points into a dropped one. Segment 0 carries the ID3v2 tag and the Xing/LAME frame,
which is rewritten for the joined file; the last segment's trailing padding is the
joined file's.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Settings
from shared.media.facts import ProbeResult
from shared.options import JobOptions
from shared.segments import Range
from worker import mp3frames
from worker.ffmpeg.args import Cut

FRAME = mp3frames.SAMPLES_PER_FRAME
PREROLL_FRAMES = 8
# The last block a segment measures starts in its range and runs 400 ms past it: the
# post-roll covers that at 48 kHz too.
POSTROLL_FRAMES = 17
# Samples of pre-roll the loudness measurement skips: the decoder's start after a seek.
WARMUP_SAMPLES = 2048
# Containers whose audio timestamps are exact to the sample, so an input seek lands on
# the sample asked (Matroska's millisecond timestamps do not).
SPLIT_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "wav"})
# MPEG-1 rates (1152-sample frames) LAME keeps as they are.
SPLIT_RATES = frozenset({32000, 44100, 48000})


def should_split(options: JobOptions, probe: ProbeResult, settings: Settings) -> bool:
    """MP3 out, nothing that needs the whole signal (trim with fades, normalisation), no
    resampling, a container with exact timestamps whose audio starts with it, and long
    enough to be worth it."""
    if settings.split_min_duration_s <= 0 or not probe.audio or probe.duration_s is None:
        return False
    rate = probe.first_audio.sample_rate
    # A seek counts from the container's start: the audio must start there too, or the
    # segments after the first would be shifted against it.
    # (WAV gives no start time: it starts at 0.)
    audio_start, start = probe.first_audio.start_s or 0.0, probe.start_s or 0.0
    return (
        abs(audio_start - start) < 0.5 / rate
        and options.format == "mp3"
        and options.trim is None
        and options.normalize is None
        and rate in SPLIT_RATES
        and options.sample_rate_hz in (None, rate)
        and probe.format_name in SPLIT_CONTAINERS
        and probe.duration_s > settings.split_min_duration_s
    )


def plan(duration_s: float, rate: int, segment_s: float) -> list[Range]:
    """Ranges of about ``segment_s`` on frame boundaries; the last runs to the input's
    end, whatever its exact length, and is between half and one and a half ranges."""
    frames = max(1, round(segment_s * rate / FRAME))
    step = frames * FRAME
    count = max(1, round(duration_s * rate / step))
    return [
        Range(start_sample=i * step, end_sample=(i + 1) * step if i < count - 1 else None)
        for i in range(count)
    ]


@dataclass(frozen=True)
class Window:
    """What one segment encodes (``cut``) and which of its frames the join keeps."""

    cut: Cut
    skip_frames: int
    keep_frames: int | None  # None: every frame to the end


def window(part: Range, rate: int) -> Window:
    start = max(0, part.start_sample - PREROLL_FRAMES * FRAME)
    skip = (part.start_sample - start) // FRAME
    if part.end_sample is None:
        return Window(Cut(start_s=start / rate, samples=None), skip, None)
    samples = part.end_sample + POSTROLL_FRAMES * FRAME - start
    keep = (part.end_sample - part.start_sample) // FRAME
    return Window(Cut(start_s=start / rate, samples=samples), skip, keep)


def cut_part(data: bytes, index: int, win: Window) -> tuple[bytes, int]:
    """The bytes of an encoded segment the join keeps, and the encode's trailing padding.

    Segment 0 keeps its ID3v2 tag and Xing/LAME frame in front of its frames."""
    layout = mp3frames.layout(data)
    delay_padding = layout.delay_padding
    frames = layout.frames[win.skip_frames :]
    if win.keep_frames is not None:
        if len(frames) < win.keep_frames:
            raise ValueError("the segment's encode is shorter than its range")
        frames = frames[: win.keep_frames]
    first, (last_offset, last_size) = frames[0][0], frames[-1]
    body = data[first : last_offset + last_size]
    if index == 0:
        assert layout.tag_frame is not None
        body = data[: layout.id3_size] + layout.tag_frame + body
    return body, delay_padding[1]


def join(parts: list[bytes], padding: int) -> bytes:
    """One MP3 from the parts ``cut_part`` kept, in order, with one Xing/LAME frame."""
    head = mp3frames.layout(parts[0])
    if head.tag_frame is None:
        raise ValueError("the first segment has no Xing/LAME frame")
    id3 = parts[0][: head.id3_size]
    audio_start = head.id3_size + len(head.tag_frame)
    audio = b"".join([parts[0][audio_start:], *parts[1:]])
    sizes = [size for _, size in mp3frames.layout(audio, tagged=False).frames]
    tag = mp3frames.write_tag(head.tag_frame, sizes, mp3frames.crc16(audio), padding)
    return id3 + tag + audio


@dataclass(frozen=True)
class Blocks:
    """Where a segment's loudness measurement starts in its own decoded audio, and which
    of its 400 ms blocks (one every 100 ms from there) fall in its range."""

    start_sample: int
    first: int
    count: int | None  # None: every block to the end


def blocks(part: Range, win: Window, rate: int) -> Blocks:
    """Blocks on one grid for the whole input (every 100 ms from its start): each segment
    measures those that start in its range, after a warm-up in its pre-roll, so the
    blocks of all segments are the blocks one measurement of the joined file makes."""
    step = rate // 10
    cut_start = part.start_sample - win.skip_frames * FRAME
    grid = 0 if part.start_sample == 0 else -(-(cut_start + WARMUP_SAMPLES) // step) * step
    first = -(-(part.start_sample - grid) // step)
    count = None
    if part.end_sample is not None:
        count = -(-(part.end_sample - grid) // step) - first
    return Blocks(start_sample=grid - cut_start, first=first, count=count)
