"""ffmpeg's command line for a conversion (ffprobe's, the whitelists and the child's
limits are in ``shared.media``, which the API uses too).

ffmpeg reads the input straight from storage over HTTP (range requests let it seek, so a
moov-at-end MP4 works) and writes the output to a seekable local file so a muxer can go
back and write its header (MP3's Xing/LAME header, MP4's moov) with the true duration. Only the protocols the input
URL needs and a list of real audio/video demuxers are allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.media.facts import Loudness, ProbeResult
from shared.media.sandbox import FORMAT_WHITELIST, protocol_whitelist
from shared.options import JobOptions
from worker.ffmpeg import outputs
from worker.ffmpeg.formats import encoding


def can_stream_copy(probe: ProbeResult, options: JobOptions) -> bool:
    """Copy the source's audio (and, for MP4, its video) as it is when that is exact: the
    source already is the requested codec and no option asks to change the samples."""
    if options.changes_audio or not probe.audio:
        return False
    row = encoding(options)
    if probe.first_audio.codec not in row.copy_from:
        return False
    if row.video is not None and probe.moving_video is not None:
        return probe.moving_video.codec in row.copy_video_from
    return True


def input_args(url: str) -> list[str]:
    """Options every read of the input takes: the protocol and demuxer whitelists, and
    reconnecting on a dropped HTTP connection."""
    argv = ["-protocol_whitelist", protocol_whitelist(url), "-format_whitelist", FORMAT_WHITELIST]
    if urlsplit(url).scheme in ("http", "https"):
        argv += [
            "-reconnect",
            "1",
            "-reconnect_on_network_error",
            "1",
            "-reconnect_delay_max",
            "10",
        ]
    return argv


@dataclass(frozen=True)
class Cut:
    """One segment of a split job: decode from ``start_s`` (ffmpeg's input seek trims the
    decoded audio to the sample) and encode ``samples`` samples (None: to the end), with
    LAME's bit reservoir off so that every frame decodes without the frames before it
    (worker/split.py)."""

    start_s: float
    samples: int | None


def transcode_argv(
    ffmpeg: str,
    input_url: str,
    output_path: str,
    options: JobOptions,
    *,
    stream_copy: bool = False,
    max_output_bytes: int | None = None,
    probe: ProbeResult | None = None,
    measured: Loudness | None = None,
    cut: Cut | None = None,
) -> list[str]:
    """One ffmpeg run that reads the input and writes the output in the job's format.

    ``probe`` (ffprobe's description of the input) gives the cover picture, the fade-out's
    start and the output rate; ``measured`` is the first pass of loudness normalisation.
    Sample rates and channel layouts a codec cannot carry are left to ffmpeg's format
    negotiation with the encoder: 5.1 becomes stereo for MP3, 96 kHz the nearest rate
    LAME takes (48 kHz), mono stays mono.
    """
    row = encoding(options)
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        # Warnings and errors only: the input's description, which would print its
        # metadata verbatim, comes from ffprobe's JSON instead.
        "-loglevel",
        "level+warning",
        "-y",
        *input_args(input_url),
        *outputs.trim_args(options),
        *(["-ss", f"{cut.start_s:.6f}"] if cut and cut.start_s else []),
        "-i",
        input_url,
    ]
    cover = None if row.cover_after else outputs.cover_source(options, probe)
    if cover == "1:V:0" and probe is not None:
        at = outputs.cover_time(options, probe)
        argv += [*input_args(input_url), "-ss", f"{at:.3f}", "-i", input_url]
    argv += ["-map", "0:a:0"]
    if row.video is not None:
        argv += ["-map", "0:V:0?"]
    elif cover is not None:
        argv += ["-map", cover]
    else:
        argv += ["-vn"]
    argv += ["-sn", "-dn", *outputs.metadata_args(options)]
    if row.vorbis_chapters and options.chapters and probe is not None:
        argv += outputs.vorbis_chapter_args(options, probe.chapters)
    if stream_copy:
        argv += ["-c:a", "copy"]
        if row.video is not None:
            argv += ["-c:v", "copy"]
    else:
        duration = outputs.output_duration(options, probe.duration_s if probe else None)
        filters = outputs.fade_filters(options, duration)
        loudnorm = outputs.loudnorm_filters(options, measured)
        if cut is not None and cut.samples is not None:
            filters.append(f"atrim=end_sample={cut.samples}")
        if filters or loudnorm:
            argv += ["-af", ",".join(filters + loudnorm)]
        argv += row.audio(options)
        if cut is not None:
            argv += ["-reservoir", "0"]
        rate = options.sample_rate_hz or row.rate
        if rate is None and loudnorm:  # back from loudnorm's 192 kHz to the input's rate
            rate = probe.first_audio.sample_rate if probe and probe.audio else None
        if rate:
            argv += ["-ar", str(rate)]
        channels: int | None = options.channels
        if channels is None and row.max_channels and probe and probe.audio:
            if probe.first_audio.channels > row.max_channels:
                channels = row.max_channels
        if channels is not None:
            argv += ["-ac", str(channels)]
        if row.video is not None:
            argv += list(row.video)
    if cover is not None and row.video is None:
        argv += outputs.cover_args(cover, stream_copy_picture=cover != "1:V:0")
    argv += [*row.muxer_args, "-f", row.muxer, "-progress", "pipe:1"]
    if max_output_bytes:
        argv += ["-fs", str(max_output_bytes)]
    return [*argv, output_path]
