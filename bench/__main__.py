"""`python -m bench [--quick]`: every figure of docs/PERFORMANCE.md beside its baseline or
target, in one run.

Starts an S3 server (`rclone serve s3`), the API and workers (against the machine's
RabbitMQ, on a queue, bucket and SQLite database of their own), generates inputs into
.bench-cache/, measures, runs Locust against the stack, then writes bench/results.json and
docs/PERFORMANCE.md's table and plots, and prints the table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import figures, large_upload, load, plots, report, split, throughput
from bench.results import FULL, QUICK, Results
from bench.stack import Services

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short inputs, fewer runs (~3 min)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated subset: e2e,copy,throughput,throttled,large,locust,split "
        "(no docs written)",
    )
    parser.add_argument(
        "--split-long", action="store_true", help="split jobs: a 3600 s input too (~3 min more)"
    )
    parser.add_argument(
        "--large-bytes",
        type=int,
        default=None,
        help=f"size of the large-file row's input (default {large_upload.DEFAULT_BYTES:,}, "
        f"{large_upload.QUICK_BYTES:,} with --quick); needs about twice that free on disk",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's logs and database")
    parser.add_argument(
        "--render", action="store_true", help="rewrite the docs and plots from bench/results.json"
    )
    args = parser.parse_args()
    if args.render:
        saved = Results.from_json(json.loads((ROOT / "bench" / "results.json").read_text()))
        plots.plots(saved)
        report.write_doc(saved, "make bench")
        return 0
    cfg = QUICK if args.quick else FULL
    large_bytes = args.large_bytes or (
        large_upload.QUICK_BYTES if args.quick else large_upload.DEFAULT_BYTES
    )
    only = set(filter(None, args.only.split(",")))
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            print(
                f"{tool} is missing: make install-system / apt-get install {tool}", file=sys.stderr
            )
            return 2

    results = Results(mode=cfg.mode, machine=report.machine())
    print(f"machine: {report.machine_line(results.machine)}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="v2m-bench-"))
    started = time.monotonic()
    services = Services(workdir)
    phases: list[tuple[str, Callable[[], object]]] = [
        ("e2e", lambda: figures.end_to_end(services, cfg, results)),
        ("e2e", lambda: figures.memory_and_disk(results)),
        ("copy", lambda: figures.stream_copy(services, cfg, results)),
        ("throughput", lambda: throughput.throughput(services, cfg, results)),
        ("throttled", lambda: throughput.throttled(services, cfg, results)),
        ("large", lambda: large_upload.large_upload(services, results, large_bytes)),
        ("locust", lambda: load.locust(services, cfg, results, workdir)),
        ("split", lambda: split.split_rows(services, cfg, results, long=args.split_long)),
    ]
    try:
        for name, run in phases:
            if only and name not in only:
                continue
            try:
                run()
            except Exception as exc:  # one broken figure must not lose the others
                traceback.print_exc()
                results.errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:500]}")
        results.phases = figures.phases(services)
    finally:
        services.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}")
    results.elapsed_s = time.monotonic() - started

    command = "make bench"
    print()
    print(f"machine: {report.machine_line(results.machine)}")
    print(report.table(results))
    print(report.notes(results))
    if only:  # a subset never replaces the full run's published figures
        out = ROOT / ".bench-cache" / "results-only.json"
        out.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")
        print(f"\nwrote {out.relative_to(ROOT)}")
        return 0
    if args.quick:  # a quick run never replaces the full run's published figures
        out = ROOT / ".bench-cache" / "results-quick.json"
        out.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")
        print(f"\nwrote {out.relative_to(ROOT)} in {results.elapsed_s / 60:.1f} min")
        return 0
    (ROOT / "bench" / "results.json").write_text(
        json.dumps(results.to_json(), indent=2, default=str) + "\n"
    )
    plots.plots(results)
    report.write_doc(results, command)
    print(f"\nwrote bench/results.json and docs/PERFORMANCE.md in {results.elapsed_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
