"""The parts of an ffmpeg command line that shape the output: trim, fades, loudness,
tags, cover picture and chapters.

Each function returns argv pieces for ``args.transcode_argv`` from the job's options and
what ffprobe said about the input (``ProbeResult``); none runs anything.
"""

from __future__ import annotations

from shared.media.facts import TAG_KEYS, Chapter, Loudness, ProbeResult
from shared.options import JobOptions, format_info

COVER_MAX_PX = 600
PEAK_MARGIN_DB = 0.5
LOUDNORM_MAX_LRA = 20  # the largest loudness range ffmpeg's loudnorm accepts as a target


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def trim_args(options: JobOptions) -> list[str]:
    """Input options (before ``-i``): ffmpeg seeks then decodes from there, sample-exact,
    and shifts the chapters' times with the cut."""
    trim = options.trim
    if trim is None:
        return []
    argv: list[str] = []
    if trim.start_s:
        argv += ["-ss", _num(trim.start_s)]
    if trim.end_s is not None:
        argv += ["-to", _num(trim.end_s)]
    return argv


def output_duration(options: JobOptions, input_duration_s: float | None) -> float | None:
    """How long the output will be, when the input's duration is known."""
    if input_duration_s is None:
        return None
    trim = options.trim
    if trim is None:
        return input_duration_s
    end = min(trim.end_s, input_duration_s) if trim.end_s is not None else input_duration_s
    return max(0.0, end - (trim.start_s or 0.0))


def fade_filters(options: JobOptions, duration_s: float | None) -> list[str]:
    trim = options.trim
    if trim is None:
        return []
    filters = []
    if trim.fade_in_s:
        filters.append(f"afade=t=in:st=0:d={_num(trim.fade_in_s)}")
    if trim.fade_out_s and duration_s:
        start = max(0.0, duration_s - trim.fade_out_s)
        filters.append(f"afade=t=out:st={_num(start)}:d={_num(trim.fade_out_s)}")
    return filters


def loudnorm_filters(options: JobOptions, measured: Loudness | None) -> list[str]:
    """Second pass of EBU R128 normalisation, from the first pass's measurement.

    With the input's figures given, loudnorm applies one linear gain when the true peak
    allows it, and its true-peak limiter otherwise. It works at 192 kHz: the caller sets
    the output rate. Lossy encoders and the resampler add a few tenths of a dB to the
    peaks, so loudnorm aims ``PEAK_MARGIN_DB`` under the ceiling. ebur128 reports no
    gating threshold; the relative gate of BS.1770 sits 10 LU below the integrated
    loudness.
    """
    norm = options.normalize
    if norm is None or measured is None or measured.integrated_lufs <= -70:
        return []  # nothing asked, or digital silence: no gain can reach a target
    peak = measured.true_peak_db if measured.true_peak_db is not None else -99.0
    settings = {
        "I": _num(norm.target_lufs),
        "TP": _num(norm.true_peak_db - PEAK_MARGIN_DB),
        "LRA": str(LOUDNORM_MAX_LRA),
        "measured_I": _num(measured.integrated_lufs),
        "measured_TP": _num(peak),
        "measured_LRA": _num(min(measured.range_lu, LOUDNORM_MAX_LRA)),
        "measured_thresh": _num(measured.integrated_lufs - 10),
        "offset": "0",
        "linear": "true",
        "print_format": "none",
    }
    return ["loudnorm=" + ":".join(f"{k}={v}" for k, v in settings.items())]


def metadata_args(options: JobOptions) -> list[str]:
    """The source's tags carried over, the job's own written over them; chapters kept
    (ffmpeg's default) unless ``chapters`` is false."""
    argv = ["-map_metadata", "0"]
    if options.tags is not None:
        for key in TAG_KEYS:
            value = getattr(options.tags, key)
            if value is not None:
                argv += ["-metadata", f"{key}={value}"]
    if not options.chapters:
        argv += ["-map_chapters", "-1"]
    return argv


def _clock(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def vorbis_chapter_args(options: JobOptions, chapters: list[Chapter]) -> list[str]:
    """Chapters as the Vorbis comment chapter extension (CHAPTERnnn, CHAPTERnnnNAME),
    moved by the trim's start and limited to the part kept.

    A chapter's name must follow its time in the file. ffmpeg sets its own ``encoder``
    tag last, and replacing a tag moves the newest one into its place: the source's
    ``encoder`` tag is removed first so nothing is moved.
    """
    start = options.trim.start_s or 0.0 if options.trim else 0.0
    end = options.trim.end_s if options.trim and options.trim.end_s is not None else None
    argv: list[str] = ["-metadata", "encoder="]
    number = 0
    for chapter in chapters:
        if chapter.end_s <= start or (end is not None and chapter.start_s >= end):
            continue
        number += 1
        at = _clock(max(0.0, chapter.start_s - start))
        argv += ["-metadata", f"CHAPTER{number:03d}={at}"]
        argv += ["-metadata", f"CHAPTER{number:03d}NAME={chapter.title}"]
    return argv


def cover_time(options: JobOptions, probe: ProbeResult) -> float:
    """When to take a cover frame: the asked time, else 10 % into the input."""
    if options.cover_at_s is not None:
        return options.cover_at_s
    return round((probe.duration_s or 0.0) * 0.1, 3)


def cover_source(options: JobOptions, probe: ProbeResult | None) -> str | None:
    """Which input stream becomes the cover: ``0:<index>`` (the source's own picture),
    ``1:V:0`` (a frame from a second, seeked read of the input), or None."""
    if probe is None or not format_info(options.format).cover:
        return None
    if options.cover == "source" and probe.cover is not None:
        return f"0:{probe.cover.index}"
    if options.cover == "frame" and probe.moving_video is not None:
        return "1:V:0"
    return None


def cover_args(source: str, *, stream_copy_picture: bool) -> list[str]:
    """Output arguments for one cover picture stream (mapped by the caller)."""
    if stream_copy_picture:
        argv = ["-c:v", "copy"]
    else:
        scale = f"scale='min({COVER_MAX_PX},iw)':-2"
        argv = ["-filter:v", scale, "-c:v", "mjpeg", "-q:v", "3", "-frames:v", "1"]
    return [*argv, "-disposition:v:0", "attached_pic"]
