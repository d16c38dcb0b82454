"""worker.ffmpeg with the real ffprobe and ffmpeg on local files: describe, limit, convert."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.errors import MediaError
from shared.options import JobOptions
from tests.integration import media
from tests.unit.conftest import make_settings
from worker import ffmpeg
from worker.convert import check_input_limits

pytestmark = pytest.mark.integration


def convert(source: Path, out: Path, **limits: float) -> ffmpeg.Transcoded:
    """What the worker does with an input: ffprobe, limits, then one ffmpeg run."""
    settings = make_settings(**limits)
    probe = ffmpeg.probe("ffprobe", str(source))
    check_input_limits(probe, settings)
    argv = ffmpeg.transcode_argv("ffmpeg", str(source), str(out), JobOptions())
    return ffmpeg.run_transcode(
        argv,
        on_progress=lambda _p: None,
        timeout_s=120,
        duration_s=probe.duration_s,
        max_duration_s=settings.max_media_duration_s,
    )


def tone(path: Path, rate: int, layout: str, seconds: int = 2) -> Path:
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            f"sine=frequency=440:sample_rate={rate}:duration={seconds},"
            f"aformat=channel_layouts={layout}",
            str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


FORGED = (
    "x\n[info]   Duration: 00:00:01.00, start: 0.000000, bitrate: 1 kb/s"
    "\n[info]   Stream #0:7: Audio: mp3, 8000 Hz, mono, fltp, 8 kb/s\n[error] partial file"
)


def test_metadata_mimicking_ffmpegs_log_changes_neither_facts_nor_the_outcome(
    tmp_path: Path,
) -> None:
    # Given a 120 s MKV whose titles hold lines that look like ffmpeg's own log
    source = tmp_path / "forged.mkv"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            "sine=frequency=440:sample_rate=44100:duration=120",
            "-metadata", f"title={FORGED}", "-metadata:s:a:0", f"title={FORGED}",
            "-c:a", "aac", str(source),
        ],
        check=True,
    )  # fmt: skip

    # When the worker describes and converts it
    probe = ffmpeg.probe("ffprobe", str(source))
    run = convert(source, tmp_path / "out.mp3")

    # Then its duration and streams are the file's, and nothing reads as cut off
    assert probe.duration_s == pytest.approx(120, abs=0.1)
    assert [(a.index, a.codec, a.sample_rate) for a in probe.audio] == [(0, "aac", 44100)]
    assert not ffmpeg.looks_truncated(run.stderr_tail), run.stderr_tail
    assert media.audio_duration(tmp_path / "out.mp3") == pytest.approx(120, abs=0.2)


@pytest.mark.parametrize(
    ("rate", "layout", "out_rate", "out_channels"),
    [(96000, "stereo", "48000", 2), (44100, "5.1", "44100", 2), (22050, "mono", "22050", 1)],
)
def test_ffmpeg_fits_rate_and_layout_to_what_mp3_carries(
    rate: int, layout: str, out_rate: str, out_channels: int, tmp_path: Path
) -> None:
    convert(tone(tmp_path / "in.wav", rate, layout), tmp_path / "out.mp3")

    info = media.probe(tmp_path / "out.mp3")
    streams = info["streams"]
    assert isinstance(streams, list)
    assert (streams[0]["sample_rate"], streams[0]["channels"]) == (out_rate, out_channels)


def test_too_long_input_is_refused_before_it_is_converted(tmp_path: Path) -> None:
    source = tone(tmp_path / "long.wav", 8000, "mono", seconds=600)

    with pytest.raises(MediaError) as info:
        convert(source, tmp_path / "out.mp3", max_media_duration_s=60)

    assert info.value.code == "media_too_long"
    assert "longest accepted" in info.value.message
    assert not (tmp_path / "out.mp3").exists()  # refused from ffprobe's JSON: ffmpeg never ran


def test_ffmpeg_over_its_address_space_limit_fails_as_a_permanent_resource_limit(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    # Given a memory limit far below what ffmpeg needs (it cannot even map its libraries)
    argv = ffmpeg.transcode_argv(
        "ffmpeg", str(sample("short_clip")), str(tmp_path / "out.mp3"), JobOptions()
    )
    argv, preexec_fn = ffmpeg.sandboxed(argv, cpu_seconds=60, memory_mb=64)

    # When it converts
    with pytest.raises(MediaError) as info:
        ffmpeg.run_transcode(
            argv, on_progress=lambda _p: None, timeout_s=120, preexec_fn=preexec_fn
        )

    # Then the failure is resource_limit, which no retry would change
    assert info.value.code == "resource_limit" and not info.value.retryable
