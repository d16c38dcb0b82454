"""Output options with the real ffmpeg and ffprobe: formats, stream copy, trim, loudness,
tags, cover and chapters, checked on the files written."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mutagen.flac import Picture
from mutagen.oggopus import OggOpus

from shared.options import JobOptions
from tests.integration import media
from tests.unit.conftest import make_settings
from worker import ffmpeg, mp3info, opus_cover
from worker.convert import measure_input
from worker.ffmpeg import loudness
from worker.ffmpeg.formats import encoding

pytestmark = pytest.mark.integration


def convert(source: Path, out: Path, options: dict[str, Any] | None = None) -> bool:
    """What the worker does: ffprobe, copy decision, loudness pass, one ffmpeg run; the
    output's measured loudness is checked to be there. True when the audio was copied."""
    opts = JobOptions.model_validate(options or {})
    probe = ffmpeg.probe("ffprobe", str(source))
    copy = ffmpeg.can_stream_copy(probe, opts)
    measured = measure_input(str(source), out.parent, opts, probe, make_settings())
    argv = ffmpeg.transcode_argv(
        "ffmpeg", str(source), str(out), opts, stream_copy=copy, probe=probe, measured=measured
    )
    ffmpeg.run_transcode(argv, on_progress=lambda _p: None, timeout_s=120)
    if encoding(opts).cover_after:
        opus_cover.add_cover(str(out), str(source), opts, probe, make_settings())
    return copy


def ffprobe(path: Path, *entries: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", ":".join(entries), "-of", "json", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def streams(path: Path) -> list[tuple[str, str]]:
    data = ffprobe(path, "stream=codec_type,codec_name")
    return [(s["codec_type"], s["codec_name"]) for s in data["streams"]]


def ebur128_summary(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) as ffmpeg's own ebur128 summary prints them."""
    log = subprocess.run(
        ["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-map", "0:a:0", "-af",
         "ebur128=peak=true", "-f", "null", "-"],
        check=True, capture_output=True, timeout=120, text=True,
    ).stderr  # fmt: skip
    summary = log[log.rindex("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    assert integrated and peak, summary
    return float(integrated.group(1)), float(peak.group(1))


def packets_md5(path: Path) -> str:
    """MD5 of the first audio stream's packets as stored (no decoding)."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy", "-f", "md5", "-"],
        check=True, capture_output=True, timeout=60, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("format-samples")


@pytest.mark.parametrize(
    ("fmt", "format_name", "expected"),
    [
        ("mp3", "mp3", [("audio", "mp3")]),
        ("m4a", "mov,mp4,m4a,3gp,3g2,mj2", [("audio", "aac")]),
        ("opus", "ogg", [("audio", "opus")]),
        ("flac", "flac", [("audio", "flac")]),
        ("wav", "wav", [("audio", "pcm_s16le")]),
        ("mp4", "mov,mp4,m4a,3gp,3g2,mj2", [("audio", "aac"), ("video", "h264")]),
    ],
)
def test_each_format_has_its_codec_and_container(
    samples: Path, tmp_path: Path, fmt: str, format_name: str, expected: list[tuple[str, str]]
) -> None:
    # Given an MKV (MPEG-4 video, AC-3 5.1 audio): nothing can be copied
    source = media.make(media.SAMPLES["mkv_ac3_51"], samples)
    out = tmp_path / f"out.{fmt}"

    copied = convert(source, out, {"format": fmt})

    assert not copied
    assert ffprobe(out, "format=format_name")["format"]["format_name"] == format_name
    assert sorted(streams(out)) == sorted(expected)
    assert media.audio_duration(out) == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize(
    ("sample", "fmt", "codec"),
    [
        ("mp3_audio", "mp3", "mp3"),
        ("mp4_h264_aac", "m4a", "aac"),
        ("webm_vp9_opus", "opus", "opus"),
    ],
)
def test_audio_already_in_the_requested_codec_is_copied_bit_exact(
    samples: Path, tmp_path: Path, sample: str, fmt: str, codec: str
) -> None:
    source = media.make(media.SAMPLES[sample], samples)
    out = tmp_path / f"out.{fmt}"

    copied = convert(source, out, {"format": fmt})

    assert copied
    assert streams(out) == [("audio", codec)]
    assert packets_md5(out) == packets_md5(source)


@pytest.mark.parametrize(
    "options",
    [{"bitrate_kbps": 128}, {"trim": {"start_s": 1}}, {"normalize": {"target_lufs": -16}}],
)
def test_an_option_asking_for_a_change_is_encoded_not_copied(
    samples: Path, tmp_path: Path, options: dict[str, Any]
) -> None:
    source = media.make(media.SAMPLES["mp3_audio"], samples)
    out = tmp_path / "out.mp3"

    copied = convert(source, out, options)

    assert not copied
    assert media.decoded_md5(out) != media.decoded_md5(source)


def test_mp4_with_h264_and_aac_is_copied_whole(samples: Path, tmp_path: Path) -> None:
    source = media.make(media.SAMPLES["mp4_h264_aac"], samples)
    out = tmp_path / "out.mp4"

    assert convert(source, out, {"format": "mp4"})
    assert sorted(streams(out)) == [("audio", "aac"), ("video", "h264")]


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a", "opus"])
def test_trim_keeps_the_asked_span_within_50_ms(samples: Path, tmp_path: Path, fmt: str) -> None:
    source = media.make(media.SAMPLES["mp4_h264_aac_long"], samples)  # 12 s
    out = tmp_path / f"out.{fmt}"
    trim = {"start_s": 2.0, "end_s": 7.5, "fade_in_s": 0.5, "fade_out_s": 1.0}

    convert(source, out, {"format": fmt, "trim": trim})

    assert media.audio_duration(out) == pytest.approx(5.5, abs=0.05)


def test_trim_end_past_the_input_keeps_up_to_its_end(samples: Path, tmp_path: Path) -> None:
    source = media.make(media.SAMPLES["mp4_h264_aac"], samples)  # 3 s
    out = tmp_path / "out.flac"

    convert(source, out, {"format": "flac", "trim": {"start_s": 1.0, "end_s": 60}})

    assert media.audio_duration(out) == pytest.approx(2.0, abs=0.05)


def peaky(path: Path) -> Path:
    """A quiet tone with a loud click every 3 s: reaching a loud target by gain alone
    would push the clicks far over the ceiling. (No channel layout in the WAV header.)"""
    expr = "0.05*sin(2*PI*440*t)+0.9*lt(mod(t\\,3)\\,0.0005)"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"aevalsrc={expr}:s=44100:d=12", "-ac", "2", "-c:a", "pcm_s16le", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("fmt", "target", "ceiling"),
    [
        ("mp3", -16.0, -1.0),
        ("flac", -14.0, -1.0),
        ("m4a", -16.0, -2.0),
        ("opus", -14.0, -1.0),
        ("wav", -23.0, -1.0),
    ],
)
def test_normalize_reaches_the_target_under_the_true_peak_ceiling(
    samples: Path, tmp_path: Path, fmt: str, target: float, ceiling: float
) -> None:
    source = peaky(samples / "peaky.wav")
    out = tmp_path / f"out.{fmt}"

    convert(
        source, out, {"format": fmt, "normalize": {"target_lufs": target, "true_peak_db": ceiling}}
    )

    integrated, peak = ebur128_summary(out)
    assert integrated == pytest.approx(target, abs=1.0)
    assert peak < ceiling
    measured = loudness.measure("ffmpeg", str(out), tmp_path, timeout_s=60)
    assert measured is not None
    assert measured.integrated_lufs == pytest.approx(integrated, abs=0.1)
    assert measured.true_peak_db == pytest.approx(peak, abs=0.15)


def tagged_video(path: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *media.VIDEO,
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "4",
         "-metadata", "title=Source title", "-metadata", "artist=Source artist",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("fmt", ["mp3", "m4a", "flac"])
def test_tags_are_carried_and_overridden_and_a_frame_becomes_the_cover(
    samples: Path, tmp_path: Path, fmt: str
) -> None:
    source = tagged_video(samples / "tagged.mp4")
    out = tmp_path / f"out.{fmt}"
    tags = {"title": "Episode 12", "album": "Talks", "track": "3/12"}

    convert(source, out, {"format": fmt, "tags": tags, "cover": "frame", "cover_at_s": 1})

    data = ffprobe(
        out, "format_tags", "stream=codec_type,codec_name:stream_disposition=attached_pic"
    )
    written = {k.lower(): v for k, v in data["format"]["tags"].items()}
    assert written["title"] == "Episode 12"
    assert written["artist"] == "Source artist"  # not asked: the source's own
    assert written["album"] == "Talks"
    pictures = [s for s in data["streams"] if s["codec_type"] == "video"]
    assert [(p["codec_name"], p["disposition"]["attached_pic"]) for p in pictures] == [("mjpeg", 1)]


def test_the_sources_own_cover_is_carried_by_default_and_dropped_with_none(
    samples: Path, tmp_path: Path
) -> None:
    # Given an MP3 with a cover picture
    with_cover = tmp_path / "covered.mp3"
    convert(tagged_video(samples / "tagged.mp4"), with_cover, {"cover": "frame"})

    convert(with_cover, tmp_path / "kept.mp3")
    convert(with_cover, tmp_path / "dropped.mp3", {"cover": "none"})

    assert ("video", "mjpeg") in streams(tmp_path / "kept.mp3")
    assert streams(tmp_path / "dropped.mp3") == [("audio", "mp3")]


def test_mp3_tags_are_id3v2_4_and_the_xing_header_is_still_read(
    samples: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tagged.mp3"

    convert(tagged_video(samples / "tagged.mp4"), out, {"tags": {"album": "Talks"}})

    assert out.read_bytes()[:4] == b"ID3\x04"
    data = ffprobe(out, "format_tags", "format=duration")
    assert data["format"]["tags"]["album"] == "Talks"
    assert data["format"]["tags"]["artist"] == "Source artist"
    xing = mp3info.read_xing(out)
    assert xing is not None
    assert xing.duration_s == pytest.approx(float(data["format"]["duration"]), abs=0.05)


def pictures(path: Path) -> list[tuple[str, int]]:
    data = ffprobe(path, "stream=codec_type,codec_name:stream_disposition=attached_pic")
    return [
        (s["codec_name"], s["disposition"]["attached_pic"])
        for s in data["streams"]
        if s["codec_type"] == "video"
    ]


def test_opus_carries_the_sources_cover_as_a_vorbis_picture(samples: Path, tmp_path: Path) -> None:
    # Given an MP3 with tags and a PNG cover
    source = media.make(media.SAMPLES["mp3_tagged_cover"], samples)
    out = tmp_path / "out.opus"

    convert(source, out, {"format": "opus"})

    # Then the Opus file holds the same PNG as its front cover, and the tags
    assert pictures(out) == [("png", 1)]
    tags = OggOpus(out).tags
    assert tags is not None
    comment = tags["METADATA_BLOCK_PICTURE"][0]
    block = Picture(base64.b64decode(comment))
    assert (block.type, block.mime) == (3, "image/png")
    assert block.data.startswith(b"\x89PNG")
    assert ffprobe(out, "stream_tags=title")["streams"][0]["tags"]["title"] == "Tagged song"


def test_opus_takes_a_frame_as_its_cover_and_none_drops_it(samples: Path, tmp_path: Path) -> None:
    source = tagged_video(samples / "tagged.mp4")
    framed, bare = tmp_path / "framed.opus", tmp_path / "bare.opus"

    convert(source, framed, {"format": "opus", "cover": "frame", "cover_at_s": 1})
    convert(
        media.make(media.SAMPLES["mp3_tagged_cover"], samples),
        bare,
        {"format": "opus", "cover": "none"},
    )

    assert pictures(framed) == [("mjpeg", 1)]
    assert pictures(bare) == []
    assert "METADATA_BLOCK_PICTURE" not in (OggOpus(bare).tags or {})


def chaptered_mkv(path: Path) -> Path:
    chapters = path.with_suffix(".ffmeta")
    chapters.write_text(
        ";FFMETADATA1\n"
        + "".join(
            f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={i * 2000}\nEND={(i + 1) * 2000}\ntitle=Part {i + 1}\n"
            for i in range(3)
        )
    )
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *media.VIDEO,
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-i", str(chapters),
         "-map", "0:v", "-map", "1:a", "-map_chapters", "2", "-t", "6",
         "-c:v", "mpeg4", "-c:a", "ac3", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def chapter_titles(path: Path) -> list[str]:
    data = ffprobe(path, "chapter=start_time:chapter_tags=title")
    return [c.get("tags", {}).get("title", "") for c in data.get("chapters", [])]


@pytest.mark.parametrize("fmt", ["mp3", "m4a", "opus", "flac"])
def test_chapters_of_an_mkv_are_carried(samples: Path, tmp_path: Path, fmt: str) -> None:
    source = chaptered_mkv(samples / "chapters.mkv")
    assert chapter_titles(source) == ["Part 1", "Part 2", "Part 3"]
    out = tmp_path / f"out.{fmt}"

    convert(source, out, {"format": fmt})

    assert chapter_titles(out) == ["Part 1", "Part 2", "Part 3"]


def test_chapters_false_drops_them(samples: Path, tmp_path: Path) -> None:
    source = chaptered_mkv(samples / "chapters.mkv")
    out = tmp_path / "out.mp3"

    convert(source, out, {"chapters": False})

    assert chapter_titles(out) == []
