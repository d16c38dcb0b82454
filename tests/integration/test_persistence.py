"""What `make run` promises across a restart: the database and the local S3 server keep
their data on disk, so a converted MP3 still downloads after both start again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import free_port, new_stack, start_s3, stop_s3

pytestmark = pytest.mark.integration


def test_a_converted_mp3_downloads_the_same_after_storage_and_api_restart(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    amqp_url: str,
    ffmpeg_available: None,
    sample: Callable[[str], Path],
) -> None:
    # Given a stack on its own S3 server, over a data directory, and a converted video
    data, port, log = tmp_path / "s3", free_port(), tmp_path / "rclone.log"
    data.mkdir()
    s3 = start_s3(data, port, log)
    stack = new_stack(tmp_path_factory, amqp_url, f"http://127.0.0.1:{port}")
    try:
        api = stack.start_api()
        stack.start_worker()
        job = stack.convert(sample("mp4_h264_aac"), "clip.mp4", "video/mp4")
        assert job["status"] == "completed", job
        before = stack.download(job["id"], tmp_path / "before.mp3").content
        # When the S3 server and the API stop, and start again over the same data
        api.stop()
        stop_s3(s3)
        s3 = start_s3(data, port, log)
        stack.start_api()
        # Then the job is still completed and downloads the same MP3, byte for byte
        assert stack.get_job(job["id"])["status"] == "completed"
        after = stack.download(job["id"], tmp_path / "after.mp3")
        assert after.content == before
        assert after.content[:3] == b"ID3" or after.content[:2] == b"\xff\xfb"
    finally:
        stack.close()
        stop_s3(s3)
