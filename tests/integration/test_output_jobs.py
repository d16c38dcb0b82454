"""Output options through the whole flow over HTTP: the job's output facts, the download's
name and type, and a trim the input cannot honour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import media
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_aac_to_m4a_is_copied_and_the_job_says_encoded_false(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    # Given an MP4 whose audio is AAC
    source = sample("mp4_h264_aac")

    # When it is converted to M4A with nothing else asked
    job = shared_stack.convert(source, "clip.mp4", "video/mp4", {"format": "m4a"})

    # Then the audio was copied, the job says so and reports the output's loudness
    assert job["status"] == "completed", job
    output = job["output"]
    assert (output["format"], output["encoded"]) == ("m4a", False)
    assert isinstance(output["loudness_lufs"], float) and output["loudness_lufs"] < 0
    assert isinstance(output["true_peak_db"], float)
    response = shared_stack.download(job["id"], tmp_path / "out.m4a")
    assert "clip.m4a" in response.headers["content-disposition"]
    assert response.headers["content-type"] == "audio/mp4"
    streams = media.probe(tmp_path / "out.m4a")["streams"]
    assert isinstance(streams, list)
    assert [s["codec_name"] for s in streams] == ["aac"]
    assert shared_stack.output_key(job["id"]).replace(".mp3", ".m4a") in shared_stack.output_keys()


def test_normalized_opus_reports_loudness_near_the_target(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    options = {"format": "opus", "normalize": {"target_lufs": -16}}

    job = shared_stack.convert(sample("mp4_h264_aac"), "clip.mp4", "video/mp4", options)

    assert job["status"] == "completed", job
    output = job["output"]
    assert output["encoded"] is True
    assert output["loudness_lufs"] == pytest.approx(-16, abs=1.0)
    assert output["true_peak_db"] < -1.0
    response = shared_stack.download(job["id"], tmp_path / "out.opus")
    assert response.headers["content-type"] == "audio/ogg"


def test_trim_starting_past_the_end_fails_trim_out_of_range(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    # The API cannot know the 3 s input's length; the worker's probe does
    options = {"trim": {"start_s": 30}}

    job = shared_stack.convert(sample("mp4_h264_aac"), "clip.mp4", "video/mp4", options)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "trim_out_of_range"
    assert "30" in job["error"]["message"]
