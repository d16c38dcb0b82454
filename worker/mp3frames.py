"""MPEG-1 Layer III frames of the files our own encoder writes, and their Xing/LAME tag.

A split job's segments are joined by concatenating whole frames (worker/join.py); the
joined file then needs one Xing/Info + LAME tag saying its frame count, byte count,
seek table (TOC), encoder delay and padding, and the CRCs, as ffmpeg's mp3 muxer writes
them for one encode. mutagen reads a Xing/LAME tag but neither walks frames nor writes a
tag, so the few fields are written here (docs/ARCHITECTURE.md, "Split jobs").

Only what ffmpeg's libmp3lame writes is handled: MPEG-1 Layer III (32, 44.1, 48 kHz),
no CRC protection, no free-format frames; anything else raises ValueError.
"""

from __future__ import annotations

import functools
import struct
import sys
from dataclasses import dataclass

from worker.mp3info import id3v2_size

SAMPLES_PER_FRAME = 1152
_RATES = (44100, 48000, 32000)
_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
TOC_SIZE = 100
# Offsets from the "Xing"/"Info" word (ffmpeg's mp3enc.c layout of the LAME extension).
_FRAMES_AT, _BYTES_AT, _TOC_AT = 8, 12, 16
_DELAY_PADDING_AT = 141
_MUSIC_LENGTH_AT, _MUSIC_CRC_AT, _TAG_CRC_AT = 148, 152, 154
_TAG_CRC_SPAN = 190  # the tag's CRC covers the frame's first 190 bytes


def _crc16_table() -> list[int]:
    """CRC-16/ARC (polynomial 0x8005, reflected), the LAME tag's CRC (ffmpeg's
    AV_CRC_16_ANSI_LE)."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC16 = _crc16_table()


@functools.cache
def _crc16_words() -> list[int]:
    """The table for two bytes at a time (a 16-bit CRC is replaced whole by each
    little-endian word): half the Python loop turns of the byte table."""
    table = []
    for word in range(65536):
        crc = (word >> 8) ^ _CRC16[word & 0xFF]
        table.append((crc >> 8) ^ _CRC16[crc & 0xFF])
    return table


def crc16(data: bytes, crc: int = 0) -> int:
    even = len(data) // 2 * 2
    if sys.byteorder == "little":
        words = _crc16_words()
        for word in memoryview(data)[:even].cast("H"):
            crc = words[crc ^ word]
    else:
        even = 0
    for byte in data[even:]:
        crc = (crc >> 8) ^ _CRC16[(crc ^ byte) & 0xFF]
    return crc


def frame_size(header: bytes) -> int:
    """Bytes of the frame that starts with ``header``; ValueError if not one of ours."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xFE != 0xFA:
        raise ValueError("not an MPEG-1 Layer III frame without CRC")
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 0x3
    if not 0 < bitrate_index < 15 or rate_index == 3:
        raise ValueError("free-format or reserved frame header")
    padding = (header[2] >> 1) & 0x1
    return 144_000 * _KBPS[bitrate_index] // _RATES[rate_index] + padding


def tag_offset(header: bytes | bytearray) -> int:
    """Where the Xing/Info word sits in an MPEG-1 frame (after the side information)."""
    mono = (header[3] >> 6) & 0x3 == 0x3
    return 4 + (17 if mono else 32)


def sample_rate(header: bytes) -> int:
    return _RATES[(header[2] >> 2) & 0x3]


@dataclass(frozen=True)
class Mp3Layout:
    """Where an MP3's parts are: its ID3v2 tag, its Xing/LAME frame (if any) and the
    (offset, size) of each audio frame after it."""

    id3_size: int
    tag_frame: bytes | None
    frames: list[tuple[int, int]]

    @property
    def delay_padding(self) -> tuple[int, int]:
        """Encoder delay and padding (samples) from the LAME tag."""
        if self.tag_frame is None:
            raise ValueError("no Xing/LAME tag")
        at = tag_offset(self.tag_frame) + _DELAY_PADDING_AT
        value = int.from_bytes(self.tag_frame[at : at + 3], "big")
        return value >> 12, value & 0xFFF


def layout(data: bytes, *, tagged: bool = True) -> Mp3Layout:
    """Walk the frames of an MP3 held in memory; ValueError on anything unexpected.

    ``tagged``: its first frame may be an Xing/LAME frame (false for bare audio frames)."""
    start = id3v2_size(data[:10])
    offset = start
    frames: list[tuple[int, int]] = []
    while offset < len(data):
        if data[offset : offset + 3] == b"TAG":  # an ID3v1 tag ends the file
            break
        size = frame_size(data[offset : offset + 4])
        if offset + size > len(data):
            raise ValueError("the last frame is cut off")
        frames.append((offset, size))
        offset += size
    if not frames:
        raise ValueError("no frames")
    tag_frame = None
    first_offset, first_size = frames[0]
    first = data[first_offset : first_offset + first_size]
    at = tag_offset(first)
    if tagged and first[at : at + 4] in (b"Xing", b"Info"):
        tag_frame = first
        frames = frames[1:]
    return Mp3Layout(id3_size=start, tag_frame=tag_frame, frames=frames)


def write_tag(template: bytes, frame_sizes: list[int], audio_crc: int, padding: int) -> bytes:
    """``template`` (an Xing/LAME frame ffmpeg wrote) rewritten for a file whose audio
    frames have ``frame_sizes`` and CRC-16 ``audio_crc``, ending in ``padding`` samples
    of padding; the encoder delay, header and LAME settings are kept.

    As ffmpeg's mp3 muxer does, so a joined file's tag reads like one encode's: the byte
    count and the TOC count the tag frame too, and the TOC is built from ffmpeg's sample
    of frame positions (``_toc``).
    """
    tag = bytearray(template)
    at = tag_offset(tag)
    total = len(tag) + sum(frame_sizes)
    struct.pack_into(">II", tag, at + _FRAMES_AT, len(frame_sizes), total)
    tag[at + _TOC_AT : at + _TOC_AT + TOC_SIZE] = _toc(len(tag), frame_sizes)
    delay_at = at + _DELAY_PADDING_AT
    delay = int.from_bytes(tag[delay_at : delay_at + 3], "big") >> 12
    tag[delay_at : delay_at + 3] = ((delay << 12) | min(padding, 0xFFF)).to_bytes(3, "big")
    # The tag's CRC is computed with its own field zero: in a mono frame the 190 bytes
    # it covers reach past the field.
    struct.pack_into(">IHH", tag, at + _MUSIC_LENGTH_AT, total, audio_crc, 0)
    # ffmpeg's muxer reads 190 bytes even from a shorter frame; the bytes past it are zero.
    covered = bytes(tag[:_TAG_CRC_SPAN]).ljust(_TAG_CRC_SPAN, b"\0")
    struct.pack_into(">H", tag, at + _TAG_CRC_AT, crc16(covered))
    return bytes(tag)


_TOC_SAMPLES = 400  # ffmpeg's XING_NUM_BAGS


def _toc(tag_size: int, frame_sizes: list[int]) -> bytes:
    """The Xing seek table as ffmpeg's muxer builds it: it keeps the byte position after
    every ``want``-th frame, halving its sample (and doubling ``want``) whenever 400
    positions are held; entry i is the sampled position i % of the way in, of 256."""
    want, held, seen = 1, 0, 0
    for _ in frame_sizes:
        seen += 1
        if seen == want:
            held += 1
            if held == _TOC_SAMPLES:
                held, want = _TOC_SAMPLES // 2, want * 2
            seen = 0
    ends = [tag_size]  # byte position after the tag frame, then after each audio frame
    for size in frame_sizes:
        ends.append(ends[-1] + size)
    total = ends[-1]
    toc = [0]
    for i in range(1, TOC_SIZE):
        sample = i * held // TOC_SIZE
        toc.append(min(256 * ends[(sample + 1) * want] // total, 255))
    return bytes(toc)
