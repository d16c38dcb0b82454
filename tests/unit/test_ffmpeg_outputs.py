"""The output side of ffmpeg's command line, per format and option, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from shared.options import JobOptions
from worker.ffmpeg import (
    AudioStream,
    Chapter,
    Loudness,
    ProbeResult,
    VideoStream,
    transcode_argv,
)
from worker.ffmpeg.outputs import loudnorm_filters, output_duration, vorbis_chapter_args


def probe_of(*, video: list[VideoStream] | None = None, channels: int = 2) -> ProbeResult:
    return ProbeResult(
        format_name="matroska,webm",
        duration_s=100.0,
        bit_rate=None,
        audio=[AudioStream(index=0, codec="ac3", channels=channels, sample_rate=44100)],
        video=video or [],
    )


def argv_for(probe: ProbeResult | None = None, **options: Any) -> list[str]:
    return transcode_argv(
        "ffmpeg", "in.mkv", "/out/x", JobOptions.model_validate(options), probe=probe
    )


def value_of(argv: list[str], flag: str) -> str | None:
    positions = [i for i, arg in enumerate(argv) if arg == flag]
    assert len(positions) <= 1, f"{flag} appears {len(positions)} times"
    return argv[positions[0] + 1] if positions else None


@pytest.mark.parametrize(
    ("fmt", "muxer", "codec"),
    [
        ("mp3", "mp3", "libmp3lame"),
        ("m4a", "ipod", "aac"),
        ("opus", "opus", "libopus"),
        ("flac", "flac", "flac"),
        ("wav", "wav", "pcm_s16le"),
        ("mp4", "mp4", "aac"),
    ],
)
def test_each_format_has_its_muxer_and_encoder(fmt: str, muxer: str, codec: str) -> None:
    argv = argv_for(format=fmt)

    assert value_of(argv, "-f") == muxer
    assert value_of(argv, "-c:a") == codec


def test_mp3_tags_are_id3v2_4() -> None:
    assert value_of(argv_for(format="mp3"), "-id3v2_version") == "4"


def test_mp4_keeps_the_video_and_encodes_it_as_h264() -> None:
    argv = argv_for(format="mp4")

    assert "-vn" not in argv
    assert argv.count("-map") == 2 and "0:V:0?" in argv
    assert value_of(argv, "-c:v") == "libx264"


def test_opus_runs_at_48_khz_and_downmixes_surround() -> None:
    argv = argv_for(probe_of(channels=6), format="opus")

    assert value_of(argv, "-ar") == "48000"
    assert value_of(argv, "-ac") == "2"


def test_trim_seeks_the_input_and_fades_from_the_kept_part() -> None:
    trim = {"start_s": 10, "end_s": 40, "fade_in_s": 2, "fade_out_s": 3}

    argv = argv_for(probe_of(), trim=trim)

    before_input = argv[: argv.index("-i")]
    assert value_of(before_input, "-ss") == "10" and value_of(before_input, "-to") == "40"
    assert value_of(argv, "-af") == "afade=t=in:st=0:d=2,afade=t=out:st=27:d=3"


def test_output_duration_stops_at_the_inputs_end() -> None:
    options = JobOptions.model_validate({"trim": {"start_s": 90, "end_s": 200}})

    assert output_duration(options, 100.0) == 10.0
    assert output_duration(options, None) is None


def test_explicit_tags_are_written_over_the_sources_and_chapters_can_be_dropped() -> None:
    argv = argv_for(tags={"title": "T", "track": "3/12"}, chapters=False)

    assert value_of(argv, "-map_metadata") == "0"
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-metadata"]
    assert pairs == ["title=T", "track=3/12"]
    assert value_of(argv, "-map_chapters") == "-1"


def test_the_sources_picture_is_copied_as_the_cover() -> None:
    probe = probe_of(video=[VideoStream(index=2, codec="mjpeg", attached_pic=True)])

    argv = argv_for(probe)

    assert "0:2" in argv and "-vn" not in argv
    assert value_of(argv, "-c:v") == "copy"
    assert value_of(argv, "-disposition:v:0") == "attached_pic"


def test_a_frame_cover_reads_the_input_a_second_time_at_10_percent() -> None:
    probe = probe_of(video=[VideoStream(index=0, codec="h264", attached_pic=False)])

    argv = argv_for(probe, cover="frame")

    assert argv.count("-i") == 2
    second = argv.index("-i", argv.index("-i") + 1)
    assert argv[second - 2 : second] == ["-ss", "10.000"]
    assert "1:V:0" in argv and value_of(argv, "-c:v") == "mjpeg"


@pytest.mark.parametrize("fmt", ["wav", "opus"])
def test_formats_without_pictures_get_no_cover(fmt: str) -> None:
    probe = probe_of(video=[VideoStream(index=2, codec="mjpeg", attached_pic=True)])

    argv = argv_for(probe, format=fmt)

    assert "-vn" in argv and "0:2" not in argv


def test_loudnorm_gets_the_first_pass_and_aims_under_the_ceiling() -> None:
    options = JobOptions.model_validate({"normalize": {"target_lufs": -16}})

    [loudnorm] = loudnorm_filters(options, Loudness(-23.5, 6.0, -4.2))

    settings = dict(part.split("=") for part in loudnorm.removeprefix("loudnorm=").split(":"))
    assert settings["I"] == "-16" and settings["TP"] == "-1.5"
    assert (settings["measured_I"], settings["measured_TP"]) == ("-23.5", "-4.2")
    assert settings["linear"] == "true"


def test_silence_is_not_normalized() -> None:
    options = JobOptions.model_validate({"normalize": {"target_lufs": -16}})

    assert loudnorm_filters(options, Loudness(-70.0, 0.0, None)) == []


def test_flac_chapters_follow_the_trim() -> None:
    chapters = [Chapter(0, 10, "Intro"), Chapter(10, 20, "Middle"), Chapter(20, 30, "End")]
    options = JobOptions.model_validate({"format": "flac", "trim": {"start_s": 12, "end_s": 25}})

    argv = vorbis_chapter_args(options, chapters)

    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-metadata"]
    assert pairs == [
        "encoder=",
        "CHAPTER001=00:00:00.000",
        "CHAPTER001NAME=Middle",
        "CHAPTER002=00:00:08.000",
        "CHAPTER002NAME=End",
    ]
