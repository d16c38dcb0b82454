"""ffmpeg's encoder and muxer arguments per output format: one table row per format.

A row says which muxer writes the file, which source codecs can be copied as they are
(exactly the requested codec), the encoder settings for the options the format takes
(``shared.options.FORMATS`` has already refused the others), and the muxer's own flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.options import JobOptions


@dataclass(frozen=True)
class Encoding:
    muxer: str
    copy_from: frozenset[str]  # source audio codecs a stream copy keeps exact
    audio: Callable[[JobOptions], list[str]]  # encoder and its settings
    muxer_args: tuple[str, ...] = ()
    video: tuple[str, ...] | None = None  # video encoder arguments when the format has video
    copy_video_from: frozenset[str] = frozenset()
    rate: int | None = None  # the one sample rate the encoder takes, if it takes one only
    max_channels: int | None = None  # more channels than this are downmixed to it
    # The muxer drops chapters: they are written as Vorbis comments (CHAPTER001=...).
    vorbis_chapters: bool = False
    # The muxer takes no picture stream: the cover is written into the file afterwards
    # (worker.opus_cover).
    cover_after: bool = False


def _mp3(options: JobOptions) -> list[str]:
    if options.bitrate_kbps is not None:
        return ["-c:a", "libmp3lame", "-b:a", f"{options.bitrate_kbps}k"]
    quality = options.quality if options.quality is not None else 2
    return ["-c:a", "libmp3lame", "-q:a", str(quality)]


def _bitrate(codec: str, default_kbps: int) -> Callable[[JobOptions], list[str]]:
    def args(options: JobOptions) -> list[str]:
        return ["-c:a", codec, "-b:a", f"{options.bitrate_kbps or default_kbps}k"]

    return args


def _codec(codec: str, *extra: str) -> Callable[[JobOptions], list[str]]:
    def args(_options: JobOptions) -> list[str]:
        return ["-c:a", codec, *extra]

    return args


ENCODINGS: dict[str, Encoding] = {
    # The Xing/LAME header needs a seekable output: the worker writes to a local file.
    "mp3": Encoding("mp3", frozenset({"mp3"}), _mp3, ("-id3v2_version", "4", "-write_xing", "1")),
    "m4a": Encoding("ipod", frozenset({"aac"}), _bitrate("aac", 192), ("-movflags", "+faststart")),
    # libopus refuses some surround layouts (5.1 with side channels): surround is
    # downmixed to stereo, as for MP3.
    "opus": Encoding(
        "opus",
        frozenset({"opus"}),
        _bitrate("libopus", 128),
        rate=48000,
        max_channels=2,
        cover_after=True,
    ),
    "flac": Encoding("flac", frozenset({"flac"}), _codec("flac"), vorbis_chapters=True),
    "wav": Encoding("wav", frozenset({"pcm_s16le"}), _codec("pcm_s16le")),
    "mp4": Encoding(
        "mp4",
        frozenset({"aac"}),
        _bitrate("aac", 192),
        ("-movflags", "+faststart"),
        video=("-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"),
        copy_video_from=frozenset({"h264"}),
    ),
}


def encoding(options: JobOptions) -> Encoding:
    return ENCODINGS[options.format]
