"""Split jobs with the real parts: segments encoded by several workers, joined gapless."""

from __future__ import annotations

import array
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.options import JobOptions
from tests.integration.conftest import Proc, Stack, StackFactory, wait_for
from worker import ffmpeg, mp3frames, mp3info
from worker.ffmpeg import loudness

pytestmark = pytest.mark.integration

FRAME = 1152


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """A pure 440 Hz stereo tone of the given length, AAC in MP4."""
    made: dict[int, Path] = {}

    def make(seconds: int) -> Path:
        if seconds not in made:
            path = tmp_path_factory.mktemp("tone") / f"tone-{seconds}.m4a"
            subprocess.run(
                [
                    *("ffmpeg", "-v", "error", "-f", "lavfi", "-i"),
                    f"sine=frequency=440:sample_rate=44100:duration={seconds}",
                    *("-ac", "2", "-c:a", "aac", "-b:a", "160k", str(path)),
                ],
                check=True,
            )
            made[seconds] = path
        return made[seconds]

    return make


def decode(path: Path) -> array.array[int]:
    """The MP3's first channel as 16-bit samples (gapless: delay and padding dropped)."""
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    samples = array.array("h")
    samples.frombytes(pcm)
    return samples


def largest_step(samples: array.array[int]) -> int:
    return max(abs(b - a) for a, b in zip(samples, samples[1:], strict=False))


def unsplit_encode(source: Path, dest: Path) -> None:
    """The worker's own ffmpeg command for the whole input in one run."""
    probe = ffmpeg.probe("ffprobe", str(source))
    argv = ffmpeg.transcode_argv("ffmpeg", str(source), str(dest), JobOptions(), probe=probe)
    subprocess.run(argv, check=True, capture_output=True)


def split_events(stack: Stack, name: str) -> list[dict[str, object]]:
    return [e for p in stack.procs if p.name.startswith("worker") for e in p.events(name)]


def stored_parts(stack: Stack) -> list[str]:
    listing = stack.s3().list_objects_v2(Bucket=stack.bucket, Prefix="parts/")
    return [obj["Key"] for obj in listing.get("Contents", [])]


def slow_ffmpeg(directory: Path, fail_last_segment: bool = False) -> str:
    """An ffmpeg that waits a moment before each run (so a test can kill a worker while
    a segment encodes), or that fails the last segment (the one cut from a start to the
    input's end) as if its audio could not be found."""
    script = directory / "ffmpeg-wrapper.sh"
    real = shutil.which("ffmpeg")
    fail = (
        'case "$*" in *"-reservoir"*) case "$*" in *"-ss "*) case "$*" in *atrim*) ;; *) '
        "echo \"Stream map '0:a:0' matches no streams.\" >&2; exit 1;; esac;; esac;; esac\n"
        if fail_last_segment
        else "sleep 1\n"
    )
    script.write_text(f'#!/bin/sh\n{fail}exec {real} "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_long_tone_split_across_workers_joins_gapless_and_as_long_as_one_encode(
    make_stack: StackFactory, tone: Callable[[int], Path], tmp_path: Path
) -> None:
    # Given two workers that split inputs over 300 s into ranges of about 120 s
    stack = make_stack(workers=2, split_min_duration_s="300", split_segment_s="120")
    source = tone(600)
    # When a 600 s tone is converted
    job = stack.convert(source, "tone.m4a", "audio/mp4")
    assert job["status"] == "completed", job
    joined = tmp_path / "joined.mp3"
    stack.download(job["id"], joined)
    unsplit = tmp_path / "unsplit.mp3"
    unsplit_encode(source, unsplit)
    # Then it was split into five segments, encoded by both workers
    (split,) = split_events(stack, "job_split")
    assert split["segments"] == 5
    assert job["segments"] == {"done": 5, "total": 5}
    assert {e["job_id"] for e in split_events(stack, "segment_done")} == {job["id"]}
    # And the joined MP3 says (Xing/LAME) and decodes to as many samples as one encode,
    # within one frame, with no step at any join larger than the tone's own
    joined_facts, unsplit_facts = mp3info.read_xing(joined), mp3info.read_xing(unsplit)
    assert joined_facts is not None and unsplit_facts is not None
    assert joined_facts.duration_s == pytest.approx(unsplit_facts.duration_s, abs=FRAME / 44100)
    ours, theirs = decode(joined), decode(unsplit)
    assert abs(len(ours) - len(theirs)) <= FRAME
    assert abs(len(ours) - 600 * 44100) <= FRAME
    assert largest_step(ours) <= largest_step(theirs)
    assert job["output"]["loudness_lufs"] is not None
    assert not stored_parts(stack)


def test_split_jobs_loudness_from_its_segments_is_that_of_the_joined_file(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # Given pink noise whose level swells and fades (so gating matters), 90 s long
    source = tmp_path / "swell.m4a"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i"),
            "anoisesrc=color=pink:sample_rate=44100:duration=90:amplitude=0.5,"
            "volume='0.05+0.95*abs(sin(t/3))':eval=frame",
            *("-ac", "2", "-c:a", "aac", "-b:a", "192k", str(source)),
        ],
        check=True,
    )
    stack = make_stack(workers=2, split_min_duration_s="30", split_segment_s="20")
    # When it is converted in segments, each measuring the loudness of its own range
    job = stack.convert(source, "swell.m4a", "audio/mp4")
    assert job["status"] == "completed" and job["segments"]["total"] == 4, job
    joined = tmp_path / "joined.mp3"
    stack.download(job["id"], joined)
    # Then the figures are those of one measurement of the joined file
    whole = loudness.measure("ffmpeg", str(joined), tmp_path, timeout_s=120)
    assert whole is not None
    assert job["output"]["loudness_lufs"] == pytest.approx(whole.integrated_lufs, abs=0.02)
    assert job["output"]["true_peak_db"] == pytest.approx(whole.true_peak_db, abs=0.02)


def converted_bytes(stack: Stack, source: Path, dest: Path) -> bytes:
    job = stack.convert(source, "tone.m4a", "audio/mp4")
    assert job["status"] == "completed", job
    stack.download(job["id"], dest)
    return dest.read_bytes()


def test_worker_killed_mid_segment_loses_only_that_segment_and_the_output_is_the_same(
    make_stack: StackFactory, tone: Callable[[int], Path], tmp_path: Path
) -> None:
    # Given two workers splitting a 60 s input into three segments, and that input's
    # output from a run nobody disturbed
    settings = {"split_min_duration_s": "30", "split_segment_s": "20"}
    stack = make_stack(workers=0, heartbeat_interval_s="0.5", job_lease_s="3", **settings)
    wrapper = slow_ffmpeg(tmp_path)
    workers: list[Proc] = [stack.start_worker(V2M_FFMPEG_BIN=wrapper) for _ in range(2)]
    source = tone(60)
    undisturbed = converted_bytes(stack, source, tmp_path / "undisturbed.mp3")
    # When a worker is killed while it encodes a segment
    job = stack.create_job(stack.upload(source, "tone.m4a", "audio/mp4"))

    def encoding_segment() -> Proc | None:
        for worker in workers:
            started = [e for e in worker.events("segment_started") if e["job_id"] == job["id"]]
            done = [e for e in worker.events("segment_done") if e["job_id"] == job["id"]]
            if len(started) > len(done):
                return worker
        return None

    wait_for(lambda: encoding_segment() is not None, 60, "a segment to start")
    victim = encoding_segment()
    assert victim is not None
    victim.popen.send_signal(signal.SIGKILL)
    victim.popen.wait(timeout=10)
    # Then the job completes, with the same bytes as the undisturbed run
    final = stack.wait_finished(job["id"], timeout=120)
    assert final["status"] == "completed", final
    stack.download(job["id"], tmp_path / "disturbed.mp3")
    assert (tmp_path / "disturbed.mp3").read_bytes() == undisturbed
    # And only the killed segment ran twice
    survivor = next(w for w in workers if w is not victim)
    redone = [e for e in survivor.events("segment_started") if e["job_id"] == job["id"]]
    started = [e for e in victim.events("segment_started") if e["job_id"] == job["id"]]
    assert len(redone) + len(started) == 4


def test_segment_failing_for_good_fails_its_job_with_the_segments_code(
    make_stack: StackFactory, tone: Callable[[int], Path], tmp_path: Path
) -> None:
    # Given a worker whose ffmpeg cannot find the audio of a job's last segment
    stack = make_stack(workers=0, split_min_duration_s="30", split_segment_s="20")
    stack.start_worker(V2M_FFMPEG_BIN=slow_ffmpeg(tmp_path, fail_last_segment=True))
    # When a 60 s input is converted in three segments
    job = stack.convert(tone(60), "tone.m4a", "audio/mp4")
    # Then the job fails with that segment's code, once, and nothing is stored as output
    assert (job["status"], job["error"]["code"]) == ("failed", "no_audio_stream"), job
    (split,) = split_events(stack, "job_split")
    assert split["segments"] == 3
    assert stack.output_keys() == []
    # And no segment's part is left in storage
    wait_for(lambda: not stored_parts(stack), 30, "the segments' parts to be removed")


@pytest.mark.parametrize(
    "encoder",
    [["-q:a", "2"], ["-b:a", "128k"], ["-ac", "1", "-q:a", "5"]],
    ids=["vbr-stereo", "cbr", "vbr-mono"],
)
def test_tag_written_for_a_files_frames_is_byte_for_byte_the_one_ffmpeg_wrote(
    tone: Callable[[int], Path], tmp_path: Path, encoder: list[str]
) -> None:
    # Given an MP3 ffmpeg wrote, Xing/LAME tag included
    path = tmp_path / "ffmpeg.mp3"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-i", str(tone(60)), "-c:a", "libmp3lame"),
            *encoder,
            *("-write_xing", "1", str(path)),
        ],
        check=True,
    )
    data = path.read_bytes()
    layout = mp3frames.layout(data)
    assert layout.tag_frame is not None
    audio = b"".join(data[offset : offset + size] for offset, size in layout.frames)
    # When the tag is written again from the file's frames
    tag = mp3frames.write_tag(
        layout.tag_frame,
        [size for _, size in layout.frames],
        mp3frames.crc16(audio),
        layout.delay_padding[1],
    )
    # Then it is the tag ffmpeg wrote: counts, seek table, delay, padding, both CRCs
    assert tag == layout.tag_frame
