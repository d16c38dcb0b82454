"""Split jobs (docs/ARCHITECTURE.md, "Split jobs"): one long input converted by 1 and 2
workers at once, against one bare ffmpeg with the same settings, in one run."""

from __future__ import annotations

import statistics

from bench import measure, media
from bench.figures import job_once
from bench.results import Config, Figure, Results
from bench.stack import Services
from shared.config import Settings
from tests.integration.conftest import Proc

# Issue 24: a 600 s 720p input, two workers, end to end.
TARGETS = {600: 0.60}
WORKER_COUNTS = (1, 2)
# The settings' default: the stack's own environment converts every job whole.
SPLIT_FROM_S = str(Settings.model_fields["split_min_duration_s"].default)


def cpu_by_process(services: Services, workers: list[Proc]) -> dict[str, float]:
    """CPU seconds so far: the workers' ffmpeg and ffprobe runs, the workers, the S3
    server."""
    return {
        "ffmpeg": sum(measure.cpu_s(p.popen.pid, children=True) for p in workers),
        "workers": sum(measure.cpu_s(p.popen.pid) for p in workers),
        "s3": measure.cpu_s(services.s3_pid),
    }


def split_rows(services: Services, cfg: Config, results: Results, *, long: bool) -> None:
    """Per input: bare ffmpeg, then the job with 1 and 2 workers splitting it (the
    settings' defaults), and with 1 worker converting it whole, runs interleaved."""
    inputs = [600, 3600] if long else [600]
    reps = 1 if cfg.mode == "quick" else 3
    for seconds in inputs:
        # The long input is audio only, as the end-to-end rows' 3600 s input is: a 720p
        # MP4 of an hour would add 2.6 GiB to generate and send, and only audio is split.
        inp = media.video_720p(seconds) if seconds <= 600 else media.audio_m4a(seconds)
        runs = 1 if seconds > 600 else reps
        print(f"- split: {seconds} s input, {runs} runs per worker count", flush=True)
        bares = [measure.bare(inp).wall_s for _ in range(runs)]
        kind = "720p MP4" if seconds <= 600 else "audio-only M4A"
        row: dict[str, object] = {"input_s": seconds, "kind": kind}
        whole: list[float] = []
        services.stop_workers()
        services.start_workers(1, V2M_SPLIT_MIN_DURATION_S="0")
        for _ in range(runs):
            whole.append(job_once(services, inp)["e2e_s"])
        row["unsplit_1_s"] = statistics.median(whole)
        by_workers: dict[int, float] = {}
        cpu: dict[int, dict[str, float]] = {}
        bare_cpu = []
        for workers in WORKER_COUNTS:
            services.stop_workers()
            procs = services.start_workers(workers, V2M_SPLIT_MIN_DURATION_S=SPLIT_FROM_S)
            times = []
            for _ in range(runs):
                run = measure.bare(inp)
                bares.append(run.wall_s)
                bare_cpu.append(run.cpu_s)
                upload_id = services.upload(inp)
                before = cpu_by_process(services, procs)  # the upload's cost left out
                (done,) = services.wait([services.create_job(upload_id)])
                after = cpu_by_process(services, procs)
                times.append(done.e2e_s)
                cpu[workers] = {k: after[k] - before[k] for k in after}
            by_workers[workers] = statistics.median(times)
        bare = statistics.median(bares)
        row.update(
            bare_s=bare, split_s=by_workers, cpu_s=cpu, bare_cpu_s=statistics.median(bare_cpu)
        )
        results.split.append(row)
        two = by_workers[2]
        target = TARGETS.get(seconds)
        results.add(
            Figure(
                f"split_{seconds}s_2w",
                f"split job, 2 workers: end-to-end / one bare ffmpeg, {seconds} s {kind} input",
                two,
                bare,
                two / bare,
                f"<= {target}" if target else "none (reported)",
                target is None or two / bare <= target,
                "s",
                f"median of {runs}; 1 worker split {by_workers[1]:.2f} s, 1 worker whole "
                f"{row['unsplit_1_s']:.2f} s, bare ffmpeg {bare:.2f} s; CPU of the last "
                "2-worker job: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in cpu[2].items())
                + f" (bare ffmpeg {statistics.median(bare_cpu):.2f} s)",
            )
        )
    services.stop_workers()
    services.start_workers(1)
