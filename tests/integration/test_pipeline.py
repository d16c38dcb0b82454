"""The whole flow over HTTP with the real parts: RabbitMQ, an S3 server, ffmpeg."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration import media
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

CONVERTIBLE = [
    "mp4_h264_aac",
    "mp4_moov_at_end",
    "mov_pcm",
    "mkv_ac3_51",
    "webm_vp9_opus",
    "avi_mp3",
    "mpegts",
    "flv",
    "two_audio_tracks",
    "short_clip",
]


def audio_streams(info: dict[str, object]) -> list[dict[str, object]]:
    streams = info.get("streams")
    assert isinstance(streams, list)
    return [s for s in streams if s.get("codec_type") == "audio"]


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_video_converts_to_mp3_of_same_duration(
    name: str, shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    # Given a generated video of this kind
    spec = media.SAMPLES[name]
    source = sample(name)
    # When a user uploads it, creates a job and waits
    job = shared_stack.convert(source, spec.filename, spec.content_type)
    # Then the job completes and the download is an MP3 as long as the source's audio
    assert job["status"] == "completed", job
    assert job["progress"] == 100 and job["error"] is None
    assert job["input"] == {"filename": spec.filename, "size_bytes": source.stat().st_size}
    response = shared_stack.download(job["id"], tmp_path / "out.mp3")
    expected_name = Path(spec.filename).stem + ".mp3"
    assert expected_name in response.headers["content-disposition"]
    assert response.headers["content-type"] == "audio/mpeg"
    info = media.probe(tmp_path / "out.mp3")
    (stream,) = audio_streams(info)
    assert stream["codec_name"] == "mp3"
    assert info["format"]["format_name"] == "mp3"  # type: ignore[index]
    out_duration = float(info["format"]["duration"])  # type: ignore[index]
    assert abs(out_duration - media.audio_duration(source)) <= 0.15
    assert job["output"]["size_bytes"] == (tmp_path / "out.mp3").stat().st_size
    assert abs(job["output"]["duration_s"] - out_duration) < 0.05
    assert int(str(stream["channels"])) <= 2


def test_surround_input_is_downmixed_to_stereo(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    job = shared_stack.convert(sample("mkv_ac3_51"), "surround.mkv", "video/x-matroska")
    shared_stack.download(job["id"], tmp_path / "out.mp3")
    (stream,) = audio_streams(media.probe(tmp_path / "out.mp3"))
    assert stream["channels"] == 2


def test_first_of_two_audio_tracks_is_used(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    # The first track is mono 44.1 kHz, the second stereo 48 kHz: the output shows which was used.
    job = shared_stack.convert(sample("two_audio_tracks"), "dub.mkv", "video/x-matroska")
    shared_stack.download(job["id"], tmp_path / "out.mp3")
    (stream,) = audio_streams(media.probe(tmp_path / "out.mp3"))
    assert (stream["channels"], stream["sample_rate"]) == (1, "44100")


def test_options_set_bitrate_rate_and_channels(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    options = {"bitrate_kbps": 96, "sample_rate_hz": 22050, "channels": 1}
    job = shared_stack.convert(sample("mp4_h264_aac"), "clip.mp4", "video/mp4", options)
    assert job["status"] == "completed" and job["options"]["bitrate_kbps"] == 96
    shared_stack.download(job["id"], tmp_path / "out.mp3")
    info = media.probe(tmp_path / "out.mp3")
    (stream,) = audio_streams(info)
    assert (stream["channels"], stream["sample_rate"]) == (1, "22050")
    assert job["output"]["bitrate_kbps"] == 96


def test_mp3_input_without_changes_is_stream_copied(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    source = sample("mp3_audio")
    job = shared_stack.convert(source, "song.mp3", "audio/mpeg")
    shared_stack.download(job["id"], tmp_path / "out.mp3")
    # Identical decoded audio means the frames were copied, not re-encoded.
    assert media.decoded_md5(tmp_path / "out.mp3") == media.decoded_md5(source)
    worker = next(p for p in shared_stack.procs if p.name.startswith("worker"))
    done = [e for e in worker.events("job_completed") if e.get("job_id") == job["id"]]
    assert done and done[0]["stream_copy"] is True
    assert job["output"]["encoded"] is False


def test_upload_named_mp3_that_is_not_mp3_is_converted(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    # AAC audio in an upload named .mp3: the stream copy is refused and it is converted.
    job = shared_stack.convert(sample("mp4_h264_aac"), "misnamed.mp3", "audio/mpeg")
    assert job["status"] == "completed", job
    shared_stack.download(job["id"], tmp_path / "out.mp3")
    (stream,) = audio_streams(media.probe(tmp_path / "out.mp3"))
    assert stream["codec_name"] == "mp3"
    worker = next(p for p in shared_stack.procs if p.name.startswith("worker"))
    done = [e for e in worker.events("job_completed") if e.get("job_id") == job["id"]]
    assert done and done[0]["stream_copy"] is False


@pytest.mark.parametrize(
    ("name", "filename", "code"),
    [
        ("no_audio", "silent-film.mp4", "no_audio_stream"),
        ("text", "notes.mp4", "unsupported_media"),
        ("empty", "empty.mp4", "unsupported_media"),
    ],
)
def test_unconvertible_input_fails_once_with_its_code(
    name: str,
    filename: str,
    code: str,
    shared_stack: Stack,
    sample: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    if name == "text":
        source = tmp_path / filename
        source.write_text("These are my meeting notes, not a video.\n" * 20)
    elif name == "empty":
        source = tmp_path / filename
        source.write_bytes(b"")
    else:
        source = sample(name)
    job = shared_stack.convert(source, filename, "video/mp4")
    assert job["status"] == "failed"
    assert job["error"]["code"] == code
    assert job["attempts"] == 1  # permanent: never retried
    assert "ffmpeg" not in job["error"]["message"].lower() and "/" not in job["error"]["message"]
    with shared_stack.client() as api:
        resp = api.get(f"/v1/jobs/{job['id']}/download")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "not_ready"
    assert shared_stack.queue_counts(f"{shared_stack.queue}.dlq")[0] == 0


def test_progress_is_reported_between_0_and_100(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    source = sample("long_audio")
    job = shared_stack.create_job(shared_stack.upload(source, "lecture.m4a", "audio/mp4"))
    seen: set[int] = set()
    final = job
    for _ in range(600):
        final = shared_stack.get_job(job["id"])
        seen.add(final["progress"])
        if final["status"] in ("completed", "failed"):
            break

        time.sleep(0.05)
    assert final["status"] == "completed"
    assert any(0 < p < 100 for p in seen), seen


def test_redelivered_message_for_completed_job_changes_nothing(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    # Given a completed job
    job = shared_stack.convert(sample("mp4_h264_aac"), "clip.mp4", "video/mp4")
    assert job["status"] == "completed"
    keys_before = shared_stack.output_keys()
    # When its message is delivered again
    shared_stack.publish_raw(json.dumps({"job_id": job["id"]}).encode())
    worker = next(p for p in shared_stack.procs if p.name.startswith("worker"))

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(e.get("job_id") == job["id"] for e in worker.events("duplicate_delivery_ignored")):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the worker never handled the redelivered message")
    # Then the job and the stored MP3s are exactly as before
    assert shared_stack.get_job(job["id"]) == job
    assert shared_stack.output_keys() == keys_before
    assert keys_before.count(shared_stack.output_key(job["id"])) == 1


def test_worker_serves_health_and_counts_finished_jobs(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    worker = next(p for p in shared_stack.procs if p.name.startswith("worker"))
    shared_stack.convert(sample("short_clip"), "blink.mp4", "video/mp4")
    base = f"http://127.0.0.1:{worker.metrics_port}"
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    text = httpx.get(f"{base}/metrics", timeout=5).text
    completed = [
        line
        for line in text.splitlines()
        if line.startswith('v2m_worker_jobs_finished_total{code="",outcome="completed"}')
    ]
    assert completed and float(completed[0].split()[-1]) >= 1


def test_events_stream_pushes_progress_until_completed(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    job = shared_stack.create_job(
        shared_stack.upload(sample("long_audio"), "lecture.m4a", "audio/mp4")
    )
    events: list[dict[str, object]] = []
    with (
        shared_stack.client() as api,
        api.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=120) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    # The stream ends by itself after the terminal event.
    assert events[-1]["status"] == "completed" and events[-1]["progress"] == 100
    progress = [int(str(e["progress"])) for e in events]
    assert progress == sorted(progress)
    assert any(0 < p < 100 for p in progress), progress


def test_events_for_unknown_job_is_404(shared_stack: Stack) -> None:
    with shared_stack.client() as api:
        resp = api.get("/v1/jobs/does-not-exist/events")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "job_not_found"
