"""Input and output limits the worker enforces from ffprobe's description, while ffmpeg
runs, and after encoding."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.errors import MediaError, TransientTranscodeError
from shared.options import JobOptions
from tests.unit.conftest import make_settings
from worker import ffmpeg
from worker.convert import check_input_limits, check_output
from worker.ffmpeg import AudioStream, ProbeResult, run_transcode, transcode_argv


def probe(
    fmt: str = "mov,mp4,m4a,3gp,3g2,mj2", duration: float | None = 60.0, audio: bool = True
) -> ProbeResult:
    streams = (
        [AudioStream(index=1, codec="aac", channels=2, sample_rate=44100, duration_s=duration)]
        if audio
        else []
    )
    return ProbeResult(format_name=fmt, duration_s=duration, bit_rate=None, audio=streams)


def mp3(duration: float) -> ProbeResult:
    return ProbeResult(
        format_name="mp3",
        duration_s=duration,
        bit_rate=128000,
        audio=[
            AudioStream(index=0, codec="mp3", channels=2, sample_rate=44100, duration_s=duration)
        ],
    )


def code_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(MediaError) as info:
        call()
    return info.value.code


def test_media_over_the_duration_limit_is_media_too_long() -> None:
    settings = make_settings(max_media_duration_s=3600)
    assert code_of(lambda: check_input_limits(probe(duration=3601), settings)) == "media_too_long"
    check_input_limits(probe(duration=3599), settings)  # within the limit: no error


def test_input_without_audio_is_no_audio_stream() -> None:
    assert (
        code_of(lambda: check_input_limits(probe(audio=False), make_settings()))
        == "no_audio_stream"
    )


def test_output_that_reached_the_size_cap_is_output_too_large() -> None:
    settings = make_settings(max_output_bytes=1000)
    assert code_of(lambda: check_output(probe(), mp3(60), [], 1000, settings)) == "output_too_large"


def test_mp4_decoding_short_of_its_header_is_input_truncated() -> None:
    assert (
        code_of(lambda: check_output(probe(duration=60), mp3(30), [], 5000, make_settings()))
        == "input_truncated"
    )


def test_partial_file_error_is_input_truncated_even_at_full_length() -> None:
    tail = ["[mov,mp4,m4a,3gp,3g2,mj2 @ 0x1] stream 1, offset 0x19293: partial file"]
    assert (
        code_of(lambda: check_output(probe(), mp3(60), tail, 5000, make_settings()))
        == "input_truncated"
    )


def test_complete_output_passes_and_small_differences_are_tolerated() -> None:
    check_output(probe(duration=60), mp3(59.6), [], 5000, make_settings())
    # Containers without a trustworthy header duration are not judged by duration.
    check_output(probe(fmt="mpegts", duration=60), mp3(40), [], 5000, make_settings())


def test_output_size_cap_is_passed_to_ffmpeg() -> None:
    argv = transcode_argv(
        "ffmpeg", "http://s3/x", "/tmp/out.mp3", JobOptions(), max_output_bytes=12345
    )
    assert argv[argv.index("-fs") + 1] == "12345"
    assert argv[-1] == "/tmp/out.mp3"


def test_conversion_over_the_wall_clock_limit_is_killed_as_a_permanent_timeout() -> None:
    with pytest.raises(MediaError) as info:
        run_transcode(["sleep", "30"], on_progress=lambda _p: None, timeout_s=0.5)

    # The same input would run out of time again: one attempt, not max_attempts.
    assert info.value.code == "timeout" and not info.value.retryable


@pytest.mark.parametrize(
    "stderr",
    [
        "ffmpeg: error while loading shared libraries: libavcodec.so.59: "
        "failed to map segment from shared object",
        "[error] Error allocating the decoder context.",
        "[aac @ 0x1] [error] decode failed: Cannot allocate memory",
    ],
    ids=["loader", "context", "enomem"],
)
def test_ffmpeg_out_of_address_space_fails_as_a_permanent_resource_limit(stderr: str) -> None:
    # Given an ffmpeg that fails an allocation under its address-space limit
    script = f"echo '{stderr}' >&2; exit 1"

    with pytest.raises(MediaError) as info:
        run_transcode(["sh", "-c", script], on_progress=lambda _p: None, timeout_s=10)

    # Then the job fails once with resource_limit instead of being retried as transient
    assert info.value.code == "resource_limit" and not info.value.retryable


@pytest.mark.parametrize(
    ("oom_kills_during_run", "code", "retryable"),
    [(1, "resource_limit", False), (0, "transcode_interrupted", True)],
    ids=["oom-killer", "other-kill"],
)
def test_a_sigkill_is_resource_limit_only_when_the_oom_killer_sent_it(
    oom_kills_during_run: int,
    code: str,
    retryable: bool,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Given the container's cgroup counter of OOM kills (cgroup v2's memory.events)
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    monkeypatch.setattr(ffmpeg.run, "OOM_COUNTERS", (tmp_path / "absent", events))
    bump = f"echo 'oom_kill {2 + oom_kills_during_run}' > {events}; "

    # When ffmpeg dies of SIGKILL
    with pytest.raises((MediaError, TransientTranscodeError)) as info:
        run_transcode(["sh", "-c", bump + "kill -9 $$"], on_progress=lambda _p: None, timeout_s=10)

    # Then the kill counts against the input only if the counter moved meanwhile
    assert (info.value.code, info.value.retryable) == (code, retryable)


def test_oom_kill_count_reads_cgroup_v1_and_v2_and_is_none_without_either(
    tmp_path: Path,
) -> None:
    v1 = tmp_path / "memory.oom_control"
    v1.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n")

    assert ffmpeg.oom_kills([tmp_path / "memory.events", v1]) == 7
    assert ffmpeg.oom_kills([tmp_path / "nothing"]) is None


def test_progress_is_reported_against_the_inputs_duration() -> None:
    script = "echo out_time_us=500000; echo out_time_us=1000000; echo '[warning] a warning' >&2"
    seen: list[int] = []

    run = run_transcode(
        ["sh", "-c", script],
        on_progress=seen.append,
        timeout_s=10,
        duration_s=2.0,
        progress_interval_s=0,
    )

    assert seen == [25, 50]
    assert run.stderr_tail == ["[warning] a warning"]


def test_output_past_the_duration_limit_stops_ffmpeg() -> None:
    # A header with no duration (a live-style stream) cannot be refused up front.
    script = "echo out_time_us=500000; echo out_time_us=7200000000; exec sleep 30"
    start = time.monotonic()

    with pytest.raises(MediaError) as info:
        run_transcode(
            ["sh", "-c", script], on_progress=lambda _p: None, timeout_s=60, max_duration_s=3600
        )

    assert info.value.code == "media_too_long"
    assert time.monotonic() - start < 5
