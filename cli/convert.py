"""`v2m convert`: each file uploaded straight to storage, converted, followed and saved.

Files run on ``parallel`` daemon threads; the main thread only waits, so Ctrl-C reaches
it at once, sets ``cancel`` and the transfers in hand stop at their next chunk.
"""

from __future__ import annotations

import mimetypes
import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.client import ApiClient, Job
from cli.errors import ApiError, CancelledError, CliError
from cli.parts import send_parts
from cli.report import Reporter
from cli.resume import UploadState, file_sha256, idempotency_key

# Answers to creating a job from a remembered upload that mean "upload it again".
UPLOAD_AGAIN = {"upload_not_found", "upload_incomplete", "upload_expired"}
# Answers to resuming a multipart upload that mean "begin a new one".
PARTS_GONE = {"upload_not_found", "upload_expired", "upload_not_multipart", "upload_completed"}


@dataclass(frozen=True)
class Plan:
    options: dict[str, Any]
    extension: str
    out_dir: Path | None = None
    overwrite: bool = False
    parallel: int = 3


@dataclass(frozen=True)
class Outcome:
    path: Path
    status: str  # converted, skipped or failed
    output: Path | None = None
    job_id: str | None = None
    code: str = ""
    message: str = ""


def output_path(path: Path, out_dir: Path | None, extension: str) -> Path:
    """``DIR/<stem>.<ext>``, beside the input when no DIR is given."""
    return (out_dir or path.parent) / f"{path.stem}.{extension}"


def content_type(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0] or ""
    return guessed if guessed.startswith(("video/", "audio/")) else "application/octet-stream"


def clashing_outputs(paths: Sequence[Path], plan: Plan) -> list[str]:
    """Sentences for inputs that would write the same output file."""
    seen: dict[Path, Path] = {}
    clashes = []
    for path in paths:
        target = output_path(path, plan.out_dir, plan.extension).resolve()
        if target in seen and seen[target].resolve() != path.resolve():
            clashes.append(f"{seen[target]} and {path} would both be saved as {target}")
        seen.setdefault(target, path)
    return clashes


class Converter:
    def __init__(
        self, client: ApiClient, state: UploadState, reporter: Reporter, plan: Plan
    ) -> None:
        self.client = client
        self.state = state
        self.reporter = reporter
        self.plan = plan
        self._key_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_lock = threading.Lock()

    def run(self, paths: Sequence[Path]) -> list[Outcome]:
        """Every file's outcome, in the order given."""
        todo: queue.Queue[Path] = queue.Queue()
        for path in dict.fromkeys(paths):
            todo.put(path)
        outcomes: dict[Path, Outcome] = {}

        def work() -> None:
            while not self.client.cancel.is_set():
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    outcomes[path] = self.one(path)
                except CancelledError:
                    return

        threads = [
            threading.Thread(target=work, name=f"v2m-{i}", daemon=True)
            for i in range(max(1, min(self.plan.parallel, todo.qsize())))
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            self.client.cancel.set()
            raise
        return [outcomes[p] for p in dict.fromkeys(paths) if p in outcomes]

    def one(self, path: Path) -> Outcome:
        reporter, plan = self.reporter, self.plan
        target = output_path(path, plan.out_dir, plan.extension)
        if target.exists() and not plan.overwrite:
            reporter.event(path, "skipped", output=str(target), reason="the output exists")
            return Outcome(path, "skipped", output=target)
        client = self.client.for_file(
            lambda seconds, why: reporter.event(path, "waiting", seconds=seconds, reason=why)
        )
        job_id = None
        try:
            key = idempotency_key(file_sha256(path), plan.options, self.state.state_id())
            with self._lock_for(key):  # the same bytes twice in one run: one job
                job, replayed = self._job(client, path, key)
            job_id = job["id"]
            reporter.event(
                path,
                "job_resumed" if replayed else "job_created",
                job_id=job_id,
                status=job["status"],
            )
            job = client.follow(job, lambda update: reporter.job(path, update))
            if job["status"] == "failed":
                error = job.get("error") or {}
                return self._failed(
                    path, job_id, error.get("code", "failed"), error.get("message", "")
                )
            reporter.event(path, "downloading", job_id=job_id)
            size = client.download(
                job_id,
                target,
                lambda n, total: reporter.advance(path, "download", n, total),
                plan.overwrite,
            )
            reporter.event(path, "saved", job_id=job_id, output=str(target), size_bytes=size)
            return Outcome(path, "converted", output=target, job_id=job_id)
        except CancelledError:
            raise
        except CliError as exc:
            return self._failed(path, job_id, exc.code, exc.message)
        except OSError as exc:
            return self._failed(path, job_id, "file_error", f"{exc.strerror or exc}.")
        except Exception as exc:  # an answer v2m did not expect: this file fails, not the run
            return self._failed(path, job_id, "unexpected_answer", f"{type(exc).__name__}: {exc}")

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_lock:
            return self._key_locks[key]

    def _job(self, client: ApiClient, path: Path, key: str) -> tuple[Job, bool]:
        """The job for ``key``: the one a remembered upload made, else upload and create."""
        options = self.plan.options
        upload_id = self.state.get(key)
        if upload_id:
            try:
                return client.create_job(upload_id, options, key)
            except ApiError as exc:
                if exc.code not in UPLOAD_AGAIN:
                    raise
                plan = self.state.plan(upload_id)
                if exc.code == "upload_incomplete" and plan is not None:
                    try:  # parts of it are in storage: send the rest
                        self._send_parts(client, path, upload_id, plan, resumed=True)
                        return client.create_job(upload_id, options, key)
                    except ApiError as again:
                        if again.code not in PARTS_GONE:
                            raise
        size = path.stat().st_size
        self.reporter.event(path, "uploading", size_bytes=size)
        grant = client.create_upload(path.name, content_type(path), size)
        self.state.put(key, grant["upload_id"])
        if grant.get("multipart"):
            self.state.put_plan(grant["upload_id"], grant["multipart"])
            self._send_parts(client, path, grant["upload_id"], grant["multipart"])
        else:
            client.put_file(
                grant, path, lambda n, total: self.reporter.advance(path, "upload", n, total)
            )
            self.reporter.event(path, "uploaded", upload_id=grant["upload_id"])
        return client.create_job(grant["upload_id"], options, key)

    def _send_parts(
        self,
        client: ApiClient,
        path: Path,
        upload_id: str,
        plan: dict[str, Any],
        resumed: bool = False,
    ) -> None:
        if resumed:
            self.reporter.event(path, "uploading", size_bytes=path.stat().st_size)
            self.reporter.event(path, "upload_resumed", upload_id=upload_id)
        else:
            self.reporter.event(path, "uploading_in_parts", part_count=plan["part_count"])
        send_parts(
            client,
            upload_id,
            plan,
            path,
            lambda n, total: self.reporter.advance(path, "upload", n, total),
        )
        self.reporter.event(path, "uploaded", upload_id=upload_id)

    def _failed(self, path: Path, job_id: str | None, code: str, message: str) -> Outcome:
        self.reporter.event(path, "failed", job_id=job_id, code=code, message=message)
        return Outcome(path, "failed", job_id=job_id, code=code, message=message)
