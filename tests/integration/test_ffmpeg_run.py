"""worker.ffmpeg with the real ffmpeg on local files: one run describes, limits, converts."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.errors import MediaError
from shared.models import JobOptions
from tests.integration import media
from tests.unit.conftest import make_settings
from worker import ffmpeg
from worker.convert import check_input_limits

pytestmark = pytest.mark.integration


def convert(source: Path, out: Path, **limits: float) -> ffmpeg.Transcoded:
    settings = make_settings(**limits)
    argv = ffmpeg.transcode_argv("ffmpeg", str(source), str(out), JobOptions())
    return ffmpeg.run_transcode(
        argv,
        on_input=lambda probe: check_input_limits(probe, settings),
        on_progress=lambda _p: None,
        timeout_s=120,
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


def test_the_run_describes_its_input_as_ffprobe_would(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    source = sample("mkv_ac3_51")

    run = convert(source, tmp_path / "out.mp3")

    audio = run.input.first_audio
    assert run.input.format_name == "matroska,webm"
    assert (audio.codec, audio.channels, audio.sample_rate) == ("ac3", 6, 48000)
    assert run.input.duration_s == pytest.approx(media.audio_duration(source), abs=0.1)


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
    started = time.monotonic()

    with pytest.raises(MediaError) as info:
        convert(source, tmp_path / "out.mp3", max_media_duration_s=60)

    assert info.value.code == "media_too_long"
    assert "longest accepted" in info.value.message
    assert time.monotonic() - started < 2  # stopped at the header, not after encoding


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
