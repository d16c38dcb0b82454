"""The cover picture of an Ogg Opus output, written after ffmpeg has encoded it.

ffmpeg's Ogg muxer takes no picture stream, so the picture (the source's own, or a frame
of the video, as ``options.cover`` asks) is taken from the input by a second, small ffmpeg
run and written with mutagen as a METADATA_BLOCK_PICTURE Vorbis comment, the form Opus
players read (the FLAC picture block, base64). A picture that cannot be taken or written
leaves the output without one: the audio is never lost over its cover.
"""

from __future__ import annotations

import base64

import structlog
from mutagen import MutagenError
from mutagen.flac import Picture
from mutagen.oggopus import OggOpus

from shared.config import Settings
from shared.errors import TranscodeError
from shared.media.facts import ProbeResult
from shared.media.probe import extract_cover, grab_picture
from shared.options import JobOptions
from worker.ffmpeg import outputs

log = structlog.get_logger("worker")

FRONT_COVER = 3  # the picture type of ID3 APIC and FLAC pictures: "Cover (front)"
PICTURE_TIMEOUT_S = 60.0  # one picture: a seek and one frame, or a copy


def take_picture(
    input_url: str, options: JobOptions, probe: ProbeResult, settings: Settings
) -> tuple[bytes, str] | None:
    """(image, MIME type) of the cover the options ask for, or None when there is none."""
    source = outputs.cover_source(options, probe)
    if source is None:
        return None
    if source == "1:V:0":  # a frame of the video, scaled as the other formats' frames
        image = grab_picture(
            settings.ffmpeg_bin,
            input_url,
            map_spec="0:V:0",
            seek_s=outputs.cover_time(options, probe),
            codec_args=[
                *["-filter:v", f"scale='min({outputs.COVER_MAX_PX},iw)':-2"],
                *["-c:v", "mjpeg", "-q:v", "3"],
            ],
            max_bytes=settings.cover_max_bytes,
            timeout_s=PICTURE_TIMEOUT_S,
            memory_mb=settings.ffmpeg_memory_limit_mb,
        )
        return image, "image/jpeg"
    cover = probe.cover
    assert cover is not None  # cover_source chose the source's own picture
    return extract_cover(
        settings.ffmpeg_bin,
        input_url,
        stream_index=cover.index,
        codec=cover.codec,
        max_bytes=settings.cover_max_bytes,
        timeout_s=PICTURE_TIMEOUT_S,
        memory_mb=settings.ffmpeg_memory_limit_mb,
    )


def write_picture(path: str, image: bytes, mime: str) -> None:
    """Add ``image`` to the Ogg Opus file at ``path`` as its front cover."""
    picture = Picture()
    picture.type = FRONT_COVER
    picture.mime = mime
    picture.desc = "Cover (front)"
    picture.data = image
    audio = OggOpus(path)
    assert audio.tags is not None  # an Opus stream always has its comment header
    audio.tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(picture.write()).decode("ascii")]
    audio.save()


def add_cover(
    path: str, input_url: str, options: JobOptions, probe: ProbeResult, settings: Settings
) -> bool:
    """Write the cover the options ask for into the Opus output; True when one was written."""
    try:
        taken = take_picture(input_url, options, probe, settings)
        if taken is None:
            return False
        write_picture(path, *taken)
    except (TranscodeError, MutagenError) as exc:
        log.info("cover_not_written", reason=getattr(exc, "code", type(exc).__name__))
        return False
    return True
