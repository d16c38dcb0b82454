"""worker.mp3info: the MP3's Xing/Info header gives what ffprobe would, without ffprobe."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from worker.mp3info import read_xing


def id3(size: int) -> bytes:
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + b"\x00" * size


def first_frame(header: bytes, tag_at: int, tag: bytes, frames: int, nbytes: int | None) -> bytes:
    flags = 0x1 | (0x2 if nbytes is not None else 0)
    body = tag + struct.pack(">II", flags, frames)
    if nbytes is not None:
        body += struct.pack(">I", nbytes)
    frame = bytearray(header + b"\x00" * 400)
    frame[tag_at : tag_at + len(body)] = body
    return bytes(frame)


def test_vbr_stereo_mpeg1_after_an_id3_tag(tmp_path: Path) -> None:
    # MPEG-1 Layer III, 44.1 kHz, joint stereo: the Xing tag sits 36 bytes into the frame
    path = tmp_path / "out.mp3"
    path.write_bytes(id3(300) + first_frame(b"\xff\xfb\x90\x44", 36, b"Xing", 431, 80_000))

    result = read_xing(path)

    assert result is not None
    assert result.duration_s == pytest.approx(431 * 1152 / 44100)
    assert result.first_audio.codec == "mp3"
    assert (result.first_audio.sample_rate, result.first_audio.channels) == (44100, 2)
    assert result.bit_rate == round(80_000 * 8 / (431 * 1152 / 44100))


def test_cbr_mono_mpeg2_info_tag_has_the_bitrate_of_its_frame_header(tmp_path: Path) -> None:
    # MPEG-2 Layer III, 22.05 kHz, mono, bitrate index 9 (80 kbit/s): 576 samples a frame,
    # the tag 13 bytes in; ffprobe reports a CBR stream's nominal bitrate
    path = tmp_path / "out.mp3"
    path.write_bytes(first_frame(b"\xff\xf3\x90\xc4", 13, b"Info", 1000, 123_456))

    result = read_xing(path)

    assert result is not None
    assert result.duration_s == pytest.approx(1000 * 576 / 22050)
    assert result.first_audio.channels == 1
    assert result.bit_rate == 80_000


def test_xing_tag_without_byte_count_uses_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "out.mp3"
    path.write_bytes(first_frame(b"\xff\xfb\x90\x44", 36, b"Xing", 500, None))

    result = read_xing(path)

    assert result is not None
    assert result.bit_rate == round(path.stat().st_size * 8 / (500 * 1152 / 44100))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff" * 5000,  # sync bits, but Layer I
        b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + b"\xff\xfb\x90\x44" + b"\x00" * 200,
        b"RIFF....WAVEfmt ",
    ],
    ids=["empty", "layer-1", "no-xing-tag", "not-mp3"],
)
def test_anything_else_gives_none_so_the_caller_asks_ffprobe(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "out.mp3"
    path.write_bytes(data)

    assert read_xing(path) is None


def test_a_missing_file_gives_none(tmp_path: Path) -> None:
    assert read_xing(tmp_path / "gone.mp3") is None
