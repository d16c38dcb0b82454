"""`python -m bench.storage_rss [--runs N]`: a worker's memory with each S3 library.

Each run is a fresh interpreter that imports what a worker imports besides storage, then
makes a worker's storage calls with one library: a client, a presigned GET (ffmpeg's
input URL), the upload of a 3 MB file (the MP3), a HEAD. It reports its resident memory
after the calls (VmRSS) and its peak (VmHWM), in MiB; "none" makes no storage calls.
The server is `rclone serve s3` over a temporary directory. Medians of N runs are printed
as a Markdown table (docs/PERFORMANCE.md, "The worker's S3 library").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LIBRARIES = ("none", "minio", "boto3")
UPLOAD_BYTES = 3 * 1024 * 1024


def _status_kib(field: str) -> int:
    """VmRSS (resident now) or VmHWM (peak) of this process, in KiB. ru_maxrss would do
    for the peak but for Linux carrying it over from the parent across fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(library: str, endpoint: str, bucket: str, path: str) -> dict[str, float]:
    """One run, in this (fresh) process; endpoint is http://host:port."""
    # The worker's own modules and the libraries they load, storage aside.
    from shared import db, jobs, logging, queue  # noqa: F401
    from worker import ffmpeg, metrics  # noqa: F401

    key, secret, region = "testing", "testing", "us-east-1"
    if library == "minio":
        from datetime import timedelta

        from minio import Minio

        client = Minio(
            endpoint.split("//", 1)[1],
            access_key=key,
            secret_key=secret,
            secure=False,
            region=region,
        )
        client.presigned_get_object(bucket, "in.mp4", expires=timedelta(hours=6))
        client.fput_object(bucket, "out.mp3", path, content_type="audio/mpeg")
        client.stat_object(bucket, "out.mp3")
    elif library == "boto3":
        import boto3
        from botocore.config import Config

        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "in.mp4"}, ExpiresIn=6 * 3600
        )
        with open(path, "rb") as body:
            s3.put_object(Bucket=bucket, Key="out.mp3", Body=body, ContentType="audio/mpeg")
        s3.head_object(Bucket=bucket, Key="out.mp3")
    return {"rss_mib": _status_kib("VmRSS") / 1024, "peak_mib": _status_kib("VmHWM") / 1024}


def measure(runs: int) -> dict[str, dict[str, float]]:
    """Medians of ``runs`` fresh processes per library, against a server started here."""
    from shared.storage import Storage
    from tests.integration.conftest import free_port, start_s3, stop_s3
    from tests.unit.conftest import make_settings

    with tempfile.TemporaryDirectory(prefix="v2m-storage-rss-") as tmp:
        workdir = Path(tmp)
        (workdir / "s3").mkdir()
        port = free_port()
        server = start_s3(workdir / "s3", port, workdir / "rclone.log")
        try:
            endpoint, bucket = f"http://127.0.0.1:{port}", "rss"
            # Set-up's log lines (rclone has no lifecycle rules) go to stderr: stdout
            # carries the table alone.
            with contextlib.redirect_stdout(sys.stderr):
                Storage(
                    make_settings(s3_endpoint_url=endpoint, s3_bucket=bucket, s3_cors_origins=[])
                ).ensure_bucket()
            upload = workdir / "out.mp3"
            upload.write_bytes(os.urandom(UPLOAD_BYTES))
            samples: dict[str, list[dict[str, float]]] = {lib: [] for lib in LIBRARIES}
            for _ in range(runs):
                for lib in LIBRARIES:
                    out = subprocess.run(
                        [sys.executable, "-m", "bench.storage_rss", "--child", lib]
                        + [endpoint, bucket, str(upload)],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    samples[lib].append(json.loads(out.stdout))
        finally:
            stop_s3(server)
    return {
        lib: {k: statistics.median(s[k] for s in runs_) for k in ("rss_mib", "peak_mib")}
        for lib, runs_ in samples.items()
    }


def table(medians: dict[str, dict[str, float]]) -> str:
    base = medians["none"]
    rows = [
        "| storage calls made with | worker RSS after the calls | peak RSS | added by the library |",
        "|---|---|---|---|",
    ]
    for lib, m in medians.items():
        rows.append(
            f"| {lib} | {m['rss_mib']:.1f} MiB | {m['peak_mib']:.1f} MiB "
            f"| {m['rss_mib'] - base['rss_mib']:+.1f} MiB |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", nargs=4, metavar=("LIBRARY", "ENDPOINT", "BUCKET", "FILE"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    print(table(measure(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
