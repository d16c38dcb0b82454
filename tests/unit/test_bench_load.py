"""The bench's Locust figures: which requests the p99 target covers, and what counts as failed.

Logic only: the rows are written here in Locust's CSV layout; no timing is measured.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bench.load import judge, read_stats
from bench.results import Results

HEADER = [
    "Type", "Name", "Request Count", "Failure Count", "Median Response Time",
    "Average Response Time", "Min Response Time", "Max Response Time", "Average Content Size",
    "Requests/s", "Failures/s", "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%",
    "99.9%", "99.99%", "100%",
]  # fmt: skip


def write_stats(path: Path, rows: list[tuple[str, str, int, int, str]]) -> Path:
    """(type, name, requests, failures, p99) rows, plus Locust's Aggregated total."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for kind, name, count, failed, p99 in rows + [("", "Aggregated", 9999, 0, "99999")]:
            values = {"Type": kind, "Name": name, "Request Count": str(count)}
            values |= {"Failure Count": str(failed), "99%": p99, "Max Response Time": p99}
            writer.writerow([values.get(column, "1") for column in HEADER])
    return path


def test_p99_target_covers_api_routes_but_not_login_storage_or_journeys(tmp_path: Path) -> None:
    stats = read_stats(
        write_stats(
            tmp_path / "locust_stats.csv",
            [
                ("POST", "POST /v1/auth/login", 10, 0, "900"),
                ("PUT", "PUT presigned upload", 10, 0, "800"),
                ("journey", "whole journey", 10, 0, "5000"),
                ("GET", "GET /v1/jobs/{id}", 100, 0, "120"),
                ("POST", "POST /v1/uploads", 10, 0, "40"),
            ],
        )
    )

    assert [s.name for s in stats if s.judged] == ["GET /v1/jobs/{id}", "POST /v1/uploads"]
    failures, p99 = judge(stats, users=50, seconds=60)
    assert (p99.ours, p99.met) == (120.0, False)
    assert p99.note.startswith("highest: GET /v1/jobs/{id}")
    assert (failures.ours, failures.met) == (0, True)


def test_a_failed_journey_or_request_fails_the_run_and_is_named(tmp_path: Path) -> None:
    stats = read_stats(
        write_stats(
            tmp_path / "locust_stats.csv",
            [
                ("GET", "GET /v1/jobs", 40, 0, "30"),
                ("GET", "GET presigned MP3", 20, 1, "20"),
                ("journey", "job", 2, 2, "N/A"),
            ],
        )
    )

    failures, p99 = judge(stats, users=50, seconds=60)

    assert (failures.ours, failures.baseline, failures.met) == (3, 60, False)
    assert "GET presigned MP3 (1)" in failures.note and "job (2)" in failures.note
    assert (p99.ours, p99.met) == (30.0, True)


def test_saved_results_of_an_older_run_still_render(tmp_path: Path) -> None:
    saved = {"mode": "full", "machine": {}, "figures": [], "http": [{"route": "trivial"}]}

    results = Results.from_json(saved)

    assert (results.mode, results.load, results.figures) == ("full", [], [])
