"""worker.ffmpeg as pure functions: argv, progress, probe parsing, errors."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import MediaError, StorageError, TransientTranscodeError
from shared.options import JobOptions
from worker.ffmpeg import (
    FORMAT_WHITELIST,
    AudioStream,
    CopyNotPossible,
    ProbeResult,
    VideoStream,
    can_stream_copy,
    classify_failure,
    parse_probe,
    parse_progress_line,
    probe_argv,
    progress_percent,
    protocol_whitelist,
    transcode_argv,
)

URL = "http://minio:9000/video2mp3/uploads/abc/in.mp4?X-Amz-Signature=x"
OUT = "/tmp/v2m-job-1/out.mp3"


def argv_for(url: str = URL, *, stream_copy: bool = False, **options: Any) -> list[str]:
    return transcode_argv("ffmpeg", url, OUT, JobOptions(**options), stream_copy=stream_copy)


def value_of(argv: list[str], flag: str) -> str | None:
    """The value after ``flag``; None when the flag is absent. Fails if it appears twice."""
    positions = [i for i, arg in enumerate(argv) if arg == flag]
    assert len(positions) <= 1, f"{flag} appears {len(positions)} times"
    return argv[positions[0] + 1] if positions else None


# --------------------------------------------------------------------------- transcode_argv


def test_default_options_encode_vbr_quality_2() -> None:
    argv = argv_for()

    assert value_of(argv, "-c:a") == "libmp3lame"
    assert value_of(argv, "-q:a") == "2"
    assert value_of(argv, "-b:a") is None


def test_bitrate_option_encodes_cbr() -> None:
    argv = argv_for(bitrate_kbps=192)

    assert value_of(argv, "-b:a") == "192k"
    assert value_of(argv, "-q:a") is None


@pytest.mark.parametrize("quality", [0, 5, 9])
def test_quality_option_sets_vbr_quality(quality: int) -> None:
    assert value_of(argv_for(quality=quality), "-q:a") == str(quality)


def test_layout_and_rate_are_left_to_ffmpeg_unless_asked() -> None:
    # libmp3lame takes mono/stereo at the MPEG rates: ffmpeg's own negotiation downmixes
    # 5.1 to stereo and picks the nearest rate (checked with real ffmpeg in integration).
    argv = argv_for()

    assert value_of(argv, "-ac") is None
    assert value_of(argv, "-ar") is None


def test_mono_output_when_asked() -> None:
    assert value_of(argv_for(channels=1), "-ac") == "1"


@pytest.mark.parametrize("rate", [22050, 32000, 44100, 48000])
def test_requested_sample_rate_is_used(rate: int) -> None:
    assert value_of(argv_for(sample_rate_hz=rate), "-ar") == str(rate)


def test_stream_copy_writes_the_audio_as_it_is() -> None:
    argv = argv_for(stream_copy=True)

    assert value_of(argv, "-c:a") == "copy"
    assert "libmp3lame" not in argv
    for flag in ("-q:a", "-b:a", "-ar", "-ac"):
        assert flag not in argv


def probe_of(codec: str, *, video: str | None = None) -> ProbeResult:
    streams = [VideoStream(index=1, codec=video, attached_pic=False)] if video else []
    return ProbeResult(
        format_name="x",
        duration_s=3.0,
        bit_rate=None,
        audio=[AudioStream(index=0, codec=codec, channels=2, sample_rate=44100)],
        video=streams,
    )


@pytest.mark.parametrize(
    ("codec", "fmt"),
    [("mp3", "mp3"), ("aac", "m4a"), ("opus", "opus"), ("flac", "flac"), ("pcm_s16le", "wav")],
)
def test_audio_already_in_the_requested_codec_is_copied(codec: str, fmt: str) -> None:
    assert can_stream_copy(probe_of(codec), JobOptions(format=fmt))


def test_tags_cover_and_chapters_do_not_prevent_a_copy() -> None:
    options = JobOptions(tags={"title": "T"}, cover="none", chapters=False)

    assert can_stream_copy(probe_of("mp3"), options)


@pytest.mark.parametrize(
    "options",
    [
        {"bitrate_kbps": 128},
        {"quality": 5},
        {"sample_rate_hz": 22050},
        {"channels": 1},
        {"trim": {"start_s": 1}},
        {"normalize": {"target_lufs": -16}},
    ],
)
def test_an_option_that_changes_the_audio_forces_an_encode(options: dict[str, Any]) -> None:
    assert not can_stream_copy(probe_of("mp3"), JobOptions(**options))


@pytest.mark.parametrize(("codec", "fmt"), [("aac", "mp3"), ("mp3", "m4a"), ("vorbis", "opus")])
def test_audio_in_another_codec_is_encoded(codec: str, fmt: str) -> None:
    assert not can_stream_copy(probe_of(codec), JobOptions(format=fmt))


def test_mp4_copies_only_when_the_video_is_h264_too() -> None:
    mp4 = JobOptions(format="mp4")

    assert can_stream_copy(probe_of("aac", video="h264"), mp4)
    assert not can_stream_copy(probe_of("aac", video="mpeg4"), mp4)


def test_only_the_first_audio_stream_and_no_video_are_mapped() -> None:
    argv = argv_for()

    assert value_of(argv, "-map") == "0:a:0"
    assert "-vn" in argv
    assert argv.index("-i") < argv.index("-map") < argv.index(OUT)


def test_http_input_allows_only_http_and_tcp() -> None:
    argv = argv_for(url="http://minio:9000/b/k")

    assert value_of(argv, "-protocol_whitelist") == "http,tcp"
    assert argv.index("-protocol_whitelist") < argv.index("-i")


def test_https_input_allows_only_https_tls_and_tcp() -> None:
    assert value_of(argv_for(url="https://s3.example.com/b/k"), "-protocol_whitelist") == (
        "https,tls,tcp"
    )


def test_input_formats_are_whitelisted_before_the_input() -> None:
    argv = argv_for()

    assert value_of(argv, "-format_whitelist") == FORMAT_WHITELIST
    assert argv.index("-format_whitelist") < argv.index("-i")
    allowed = set(FORMAT_WHITELIST.split(","))
    assert {"mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "mp3"} <= allowed
    assert not {"hls", "concat", "image2", "tty", "lavfi"} & allowed


def test_output_path_is_last_and_progress_goes_to_stdout() -> None:
    argv = argv_for()

    assert argv[0] == "ffmpeg"
    assert argv[-1] == OUT
    assert value_of(argv, "-progress") == "pipe:1"
    assert value_of(argv, "-f") == "mp3"
    assert value_of(argv, "-i") == URL
    assert "-nostdin" in argv


def test_input_url_is_passed_as_one_argument() -> None:
    url = "http://minio:9000/b/uploads/x/a%20b.mp4?X-Amz-Signature=abc&X-Amz-Date=1"

    assert value_of(argv_for(url=url), "-i") == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/k", "http,tcp"),
        ("https://h/k", "https,tls,tcp"),
        ("/tmp/out.mp3", "file"),
        ("file:///tmp/out.mp3", "file"),
    ],
)
def test_protocol_whitelist_per_scheme(url: str, expected: str) -> None:
    assert protocol_whitelist(url) == expected


@pytest.mark.parametrize(
    "url", ["ftp://h/k", "rtmp://h/live", "concat:a.mp4|b.mp4", "data:;base64,AAAA", "gopher://h"]
)
def test_protocol_whitelist_refuses_other_schemes(url: str) -> None:
    with pytest.raises(MediaError):
        protocol_whitelist(url)


def test_probe_argv_restricts_protocols_and_formats() -> None:
    argv = probe_argv("ffprobe", URL)

    assert value_of(argv, "-protocol_whitelist") == "http,tcp"
    assert value_of(argv, "-format_whitelist") == FORMAT_WHITELIST
    assert argv[-1] == URL
    assert "-format_whitelist" not in probe_argv("ffprobe", OUT, restrict_formats=False)


# --------------------------------------------------------------------------- progress


@pytest.mark.parametrize(
    ("line", "seconds"),
    [
        ("out_time_us=1500000", 1.5),
        ("out_time_ms=1500000\n", 1.5),  # ffmpeg's out_time_ms is microseconds too
        ("  out_time_us=0  ", 0.0),
        ("out_time_us=3600000000", 3600.0),
    ],
)
def test_progress_line_gives_seconds_written(line: str, seconds: float) -> None:
    assert parse_progress_line(line) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "progress=continue",
        "out_time=00:00:01.500000",
        "out_time_us=N/A",
        "out_time_us=",
        "out_time_us=1.5e6",
        "out_time_us=-5000",
        "frame=12",
        "garbage without equals",
    ],
)
def test_progress_line_without_a_time_gives_none(line: str) -> None:
    assert parse_progress_line(line) is None


@pytest.mark.parametrize(
    ("out_time", "duration", "percent"),
    [(0.0, 10.0, 0), (5.0, 10.0, 50), (9.95, 10.0, 99), (10.0, 10.0, 99), (30.0, 10.0, 99)],
)
def test_progress_percent_is_clamped_below_100(
    out_time: float, duration: float, percent: int
) -> None:
    assert progress_percent(out_time, duration) == percent


@pytest.mark.parametrize("duration", [None, 0.0, -1.0])
def test_progress_percent_is_none_without_a_duration(duration: float | None) -> None:
    assert progress_percent(5.0, duration) is None


# --------------------------------------------------------------------------- probe parsing

MKV_51 = {
    "streams": [
        {"index": 0, "codec_type": "video", "codec_name": "h264"},
        {
            "index": 1,
            "codec_type": "audio",
            "codec_name": "ac3",
            "channels": 6,
            "sample_rate": "48000",
        },
        {"index": 2, "codec_type": "subtitle", "codec_name": "subrip"},
        {
            "index": 3,
            "codec_type": "audio",
            "codec_name": "aac",
            "channels": 2,
            "sample_rate": "44100",
        },
    ],
    "format": {"format_name": "matroska,webm", "duration": "12.480000", "bit_rate": "2500000"},
}


def test_parse_probe_keeps_audio_streams_in_order() -> None:
    result = parse_probe(MKV_51)

    assert result.format_name == "matroska,webm"
    assert result.duration_s == pytest.approx(12.48)
    assert result.bit_rate == 2_500_000
    assert [(a.index, a.codec, a.channels, a.sample_rate) for a in result.audio] == [
        (1, "ac3", 6, 48000),
        (3, "aac", 2, 44100),
    ]
    assert result.first_audio.codec == "ac3"


def test_parse_probe_without_audio_has_no_streams() -> None:
    result = parse_probe(
        {"streams": [{"index": 0, "codec_type": "video"}], "format": {"format_name": "mov"}}
    )

    assert result.audio == []


def test_parse_probe_treats_na_values_as_unknown() -> None:
    result = parse_probe(
        {
            "streams": [
                {"index": 0, "codec_type": "audio", "codec_name": "opus", "sample_rate": "N/A"}
            ],
            "format": {"format_name": "ogg", "duration": "N/A", "bit_rate": "N/A"},
        }
    )

    assert result.duration_s is None
    assert result.bit_rate is None
    assert result.first_audio.sample_rate == 0
    assert result.first_audio.channels == 0


@pytest.mark.parametrize("data", [{}, {"streams": None, "format": None}])
def test_parse_probe_of_empty_output_is_empty(data: dict[str, Any]) -> None:
    result = parse_probe(data)

    assert result.format_name == ""
    assert result.audio == []
    assert result.duration_s is None


# --------------------------------------------------------------------------- forged metadata

FORGED = "x\n[info]   Duration: 00:00:01.00, start: 0.000000, bitrate: 1 kb/s\n" + (
    "[info]   Stream #0:7: Audio: mp3, 8000 Hz, mono, fltp, 8 kb/s\n[error] partial file"
)


def test_metadata_forging_ffmpegs_log_lines_cannot_pass_for_a_stream_or_a_duration() -> None:
    # Given ffprobe's JSON for a 120 s MKV whose title and stream title mimic ffmpeg's log
    data = {
        "format": {
            "format_name": "matroska,webm",
            "duration": "120.023000",
            "bit_rate": "71000",
            "tags": {"title": FORGED, FORGED: FORGED},
        },
        "streams": [
            {
                "index": 0,
                "codec_type": "audio",
                "codec_name": "aac",
                "channels": 1,
                "sample_rate": "44100",
                "tags": {"title": FORGED},
            }
        ],
    }

    result = parse_probe(data)

    # Then the facts are ffprobe's fields, whatever the tags say
    assert result.duration_s == pytest.approx(120.023)
    assert [(a.index, a.codec, a.sample_rate) for a in result.audio] == [(0, "aac", 44100)]


def test_ffmpeg_logs_no_input_description_for_metadata_to_forge() -> None:
    # Its description of the input (info level) would print the file's metadata verbatim.
    assert value_of(argv_for(), "-loglevel") == "level+warning"


# --------------------------------------------------------------------------- failures

STDERR_SECRET = "http://minio:9000/video2mp3/uploads/x?X-Amz-Signature=deadbeef: "


def test_killed_process_is_a_retryable_transient_error() -> None:
    error = classify_failure(-9, "", stage="ffmpeg")

    assert isinstance(error, TransientTranscodeError)
    assert error.retryable


@pytest.mark.parametrize(
    "stderr",
    [
        "Connection refused",
        "Connection reset by peer",
        "Server returned 5XX Server Error reply",
        "Server returned 403 Forbidden (access denied)",
        "Failed to resolve hostname minio",
    ],
)
def test_storage_trouble_is_a_retryable_storage_error(stderr: str) -> None:
    error = classify_failure(1, STDERR_SECRET + stderr, stage="probe")

    assert isinstance(error, StorageError)
    assert error.retryable


@pytest.mark.parametrize(
    "stderr",
    [
        "Invalid data found when processing input",
        "moov atom not found",
        "Format mov,mp4 not on whitelist 'mp3'",
        "",
    ],
)
def test_unreadable_media_is_a_permanent_media_error(stderr: str) -> None:
    error = classify_failure(1, STDERR_SECRET + stderr, stage="probe")

    assert isinstance(error, MediaError)
    assert error.code == "unsupported_media"
    assert not error.retryable


def test_unmatched_audio_map_is_no_audio_stream() -> None:
    error = classify_failure(1, "[fatal] Stream map '0:a:0' matches no streams.", stage="ffmpeg")

    assert isinstance(error, MediaError) and error.code == "no_audio_stream"
    assert not error.retryable


def test_copying_audio_that_is_not_mp3_asks_for_a_conversion() -> None:
    stderr = "[mp3 @ 0x1] [error] Invalid audio stream. Exactly one MP3 audio stream is required."

    assert isinstance(classify_failure(1, stderr, stage="ffmpeg"), CopyNotPossible)


@pytest.mark.parametrize(
    ("returncode", "stderr"),
    [
        (1, "Invalid data found when processing input"),
        (1, "Connection refused"),
        (-9, "Killed"),
    ],
)
def test_user_facing_message_never_contains_raw_stderr(returncode: int, stderr: str) -> None:
    raw = STDERR_SECRET + stderr
    error = classify_failure(returncode, raw, stage="ffmpeg")

    assert isinstance(error, (MediaError, StorageError, TransientTranscodeError))
    assert "X-Amz-Signature" not in error.message
    assert stderr not in error.message
    assert error.message.endswith(".")
    # operators still get it
    assert error.detail is not None and stderr in error.detail
