"""The large-file row: a multi-GB input uploaded in parts through the API (the CLI's own
code: four parts at a time), then converted; its upload throughput beside one plain
presigned PUT of the same bytes to the same server.

The input is a real faststart MP4 (one minute of 720p audio and video) followed by a
top-level ``free`` box of zeros up to the size asked for, a sparse file: cheap to make
and to read from disk, so the figures measure the transfer and storage, not the disk;
ffmpeg reads the moov and the media and never the padding.
"""

from __future__ import annotations

import os
import struct
import time

import httpx

from bench import media
from bench.figures import s3_client
from bench.media import CACHE, Input
from bench.results import Figure, Results
from bench.stack import Services, sampling
from cli.client import ApiClient
from cli.parts import send_parts

GB = 1_000_000_000
MB = 1024 * 1024
DEFAULT_BYTES = 5 * GB  # `--large-bytes`; --quick takes QUICK_BYTES unless given
QUICK_BYTES = 1 * GB


def padded_video(size_bytes: int) -> Input:
    """A minute of 720p MP4 padded with a sparse ``free`` box to ``size_bytes``."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"large-{size_bytes}.mp4"
    if not path.exists() or path.stat().st_size != size_bytes:
        head = media.video_720p(60).path.read_bytes()
        assert size_bytes > len(head) + 16, "the size must exceed the minute of video"
        with path.open("wb") as out:
            out.write(head)
            out.write(struct.pack(">I4sQ", 1, b"free", size_bytes - len(head)))
            out.truncate(size_bytes)
    return Input(path, f"camera-{size_bytes / GB:.1f}gb.mp4", "video/mp4", 60.0)


def _put_once(services: Services, inp: Input) -> float:
    """One presigned PUT of the whole file, straight to storage; its seconds."""
    s3 = s3_client(services.s3_url)
    key = f"bench-single-put/{inp.filename}"
    url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": services.stack.bucket, "Key": key, "ContentLength": inp.size_bytes},
        ExpiresIn=3600,
    )
    started = time.monotonic()
    with inp.path.open("rb") as body:
        put = httpx.put(
            url, content=body, headers={"Content-Length": str(inp.size_bytes)}, timeout=3600
        )
    elapsed = time.monotonic() - started
    assert put.status_code == 200, put.text
    s3.delete_object(Bucket=services.stack.bucket, Key=key)  # the disk is needed again
    return elapsed


def _upload_in_parts(services: Services, inp: Input) -> tuple[str, float, dict[str, int]]:
    """POST /v1/uploads, the CLI's parts, complete: (upload id, seconds, the plan)."""
    grant = services.http.post(
        "/v1/uploads",
        json={
            "filename": inp.filename,
            "content_type": inp.content_type,
            "size_bytes": inp.size_bytes,
            "multipart": True,
        },
    ).json()
    plan = grant["multipart"]
    api = httpx.Client(base_url=services.stack.api_url, headers=services.http.headers, timeout=120)
    client = ApiClient(services.stack.api_url, api, httpx.Client(timeout=600))
    started = time.monotonic()
    try:
        send_parts(client, grant["upload_id"], plan, inp.path, lambda _n, _total: None)
    finally:
        client.close()
    return grant["upload_id"], time.monotonic() - started, plan


def large_upload(services: Services, results: Results, size_bytes: int) -> None:
    inp = padded_video(size_bytes)
    free = os.statvfs(services.workdir)
    assert free.f_bavail * free.f_frsize > 2.2 * size_bytes, "not enough disk for the row"
    print(f"- large upload: {size_bytes / GB:.1f} GB in parts vs one PUT", flush=True)
    put_s = _put_once(services, inp)
    upload_id, parts_s, plan = _upload_in_parts(services, inp)
    if not services.workers:
        services.start_workers(1)
    with sampling(services) as sampler:
        (row,) = services.wait([services.create_job(upload_id)])
    parts_rate, put_rate = size_bytes / MB / parts_s, size_bytes / MB / put_s
    results.add(
        Figure(
            "large_upload",
            f"{size_bytes / GB:.1f} GB input uploaded in parts: throughput / one PUT's",
            parts_rate,
            put_rate,
            parts_rate / put_rate,
            ">= 0.80",
            parts_rate / put_rate >= 0.80,
            "MiB/s",
            f"{plan['part_count']} parts of {plan['part_size'] // MB} MiB, 4 at a time, "
            f"{parts_s:.1f} s; one PUT {put_s:.1f} s; then converted in {row.e2e_s:.1f} s "
            f"end to end, worker temp disk peak {sampler.tmp_peak / MB:.1f} MiB for a "
            f"{(row.output_size_bytes or 0) / MB:.1f} MiB MP3",
        )
    )
