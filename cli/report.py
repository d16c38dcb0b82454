"""How `v2m convert` shows what happens: rich live rows on a terminal, one plain line per
event otherwise, or one JSON object per event with `--json` (for scripts).

The converter calls ``event`` for every step (a name and its fields), ``advance`` for bytes
moved, and ``job`` for each update of the job's events stream.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table
from rich.text import Text

if TYPE_CHECKING:
    from cli.convert import Outcome

PHASES = ("upload", "convert", "download")  # each is a third of a file on the overall bar


def summary_counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = {"converted": 0, "skipped": 0, "failed": 0}
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


class Reporter:
    """Plain lines: ``<file>: <what happened>``."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self._last_job: dict[Path, tuple[str, int]] = {}

    def start(self, paths: Sequence[Path]) -> None:
        return None

    def stop(self) -> None:
        return None

    def advance(self, path: Path, phase: str, n: int, total: int) -> None:
        return None

    def job(self, path: Path, job: dict[str, Any]) -> None:
        """A job update, reported when its status or progress changed."""
        now = (str(job["status"]), int(job.get("progress") or 0))
        with self._lock:
            if self._last_job.get(path) == now:
                return
            self._last_job[path] = now
        self.event(path, "job", job_id=job["id"], status=now[0], progress=now[1])

    def event(self, path: Path, name: str, **fields: Any) -> None:
        self._write(f"{path.name}: {describe(name, fields)}")

    def finish(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            if o.status == "failed":
                self._write(f"FAILED {o.path}: {o.code}: {o.message}")
        counts = summary_counts(outcomes)
        self._write(", ".join(f"{n} {status}" for status, n in counts.items()))

    def _write(self, line: str) -> None:
        with self._lock:
            print(line, file=self.out, flush=True)


class JsonReporter(Reporter):
    """One JSON object per line: {"event": name, "file": path, ...fields}."""

    def event(self, path: Path, name: str, **fields: Any) -> None:
        self._write(json.dumps({"event": name, "file": str(path), **fields}))

    def finish(self, outcomes: Sequence[Outcome]) -> None:
        failures = [
            {"file": str(o.path), "job_id": o.job_id, "code": o.code, "message": o.message}
            for o in outcomes
            if o.status == "failed"
        ]
        self._write(
            json.dumps({"event": "summary", **summary_counts(outcomes), "failures": failures})
        )


def describe(name: str, fields: dict[str, Any]) -> str:
    """A short sentence for an event, for plain lines and the live rows' log."""
    match name:
        case "skipped":
            return f"skipped: {fields['output']} exists (--overwrite replaces it)"
        case "waiting":
            return f"waiting {fields['seconds']:.0f} s: {fields['reason']}"
        case "uploading":
            return f"uploading {fields['size_bytes']} bytes"
        case "uploading_in_parts":
            return f"in {fields['part_count']} parts"
        case "upload_resumed":
            return "resuming the upload: parts storage holds are skipped"
        case "uploaded":
            return "uploaded"
        case "job_created":
            return f"job {fields['job_id']} {fields['status']}"
        case "job_resumed":
            return f"job {fields['job_id']} {fields['status']} (already created: nothing uploaded)"
        case "job":
            return f"{fields['status']} {fields['progress']}%"
        case "downloading":
            return "downloading"
        case "saved":
            return f"saved {fields['output']} ({fields['size_bytes']} bytes)"
        case "failed":
            return f"failed: {fields['code']}: {fields['message']}"
    return name


class TransferColumn(ProgressColumn):
    """Bytes, rate and time left while a row moves bytes; nothing while it converts."""

    def __init__(self) -> None:
        super().__init__()
        self._parts = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") != "bytes":
            return Text("")
        return Text(" ").join(part.render(task) for part in self._parts)


class RichReporter(Reporter):
    """A live row per file (phase, bar, percent, bytes/rate/ETA) and an overall bar."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"),
            TextColumn(  # fixed width: the bars do not jump as phases change
                "{task.fields[phase]}",
                style="cyan",
                table_column=Column(width=11, no_wrap=True, overflow="ellipsis"),
            ),
            BarColumn(),
            TaskProgressColumn(),
            TransferColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[Path, TaskID] = {}
        self._done: dict[Path, float] = {}  # phases finished, in thirds of a file
        self._overall: TaskID | None = None

    def start(self, paths: Sequence[Path]) -> None:
        for path in dict.fromkeys(paths):
            self._tasks[path] = self.progress.add_task(
                path.name[:40], total=None, phase="waiting", unit=""
            )
            self._done[path] = 0.0
        self._overall = self.progress.add_task(
            "all files", total=len(self._tasks) * len(PHASES), phase="", unit=""
        )
        self.progress.start()

    def stop(self) -> None:
        self.progress.refresh()
        self.progress.stop()

    def advance(self, path: Path, phase: str, n: int, total: int) -> None:
        task = self._tasks[path]
        self.progress.update(task, total=total or None, advance=n)
        self._overall_to(path, PHASES.index(phase), self.progress.tasks[task].percentage / 100)

    def event(self, path: Path, name: str, **fields: Any) -> None:
        task = self._tasks[path]
        reset = self.progress.reset
        match name:
            case "uploading":
                reset(task, total=fields["size_bytes"], phase="uploading", unit="bytes")
            case "job_created" | "job_resumed":
                reset(task, total=100, phase=fields["status"], unit="percent")
                self._overall_to(path, 1, 0.0)
            case "downloading":
                reset(task, total=None, phase="downloading", unit="bytes")
                self._overall_to(path, 2, 0.0)
            case "saved" | "skipped":
                total = self.progress.tasks[task].total or 1
                reset(task, total=total, completed=int(total), phase=name, unit="")
                self._overall_to(path, len(PHASES), 0.0)
            case "failed":
                self.progress.update(task, phase="[red]failed", unit="")
                self._overall_to(path, len(PHASES), 0.0)
                self.progress.console.print(f"[red]{path.name}: {describe(name, fields)}")
            case "waiting":
                self.progress.update(task, phase=f"waiting {fields['seconds']:.0f} s")
                self.progress.console.print(f"[yellow]{path.name}: {describe(name, fields)}")
            case "job":
                self.progress.update(task, phase=fields["status"], completed=fields["progress"])
                self._overall_to(path, 1, fields["progress"] / 100)

    def _overall_to(self, path: Path, phase: int, fraction: float) -> None:
        self._done[path] = max(self._done[path], phase + fraction)
        if self._overall is not None:
            self.progress.update(self._overall, completed=sum(self._done.values()))

    def finish(self, outcomes: Sequence[Outcome]) -> None:
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            table = Table(title="Failed", title_style="bold red")
            for column in ("file", "code", "message"):
                table.add_column(column)
            for o in failed:
                table.add_row(str(o.path), o.code, o.message)
            self.console.print(table)
        counts = summary_counts(outcomes)
        self.console.print(", ".join(f"{n} {status}" for status, n in counts.items()))
