"""`python -m worker`: settings, logging, signals, tables and bucket, consume.

The worker keeps its own memory small (docs/PERFORMANCE.md): the start-up set-up
(migrations, bucket) runs in a child process (`python -m shared.migrate`), so Alembic and
boto3 never load here.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

import structlog

from shared.config import get_settings
from shared.db import make_engine
from shared.logging import configure_logging
from shared.procs import pid_alive
from shared.queue import Publisher
from shared.storage import Storage
from worker.consumer import Consumer
from worker.context import JobContext
from worker.convert import TMP_PREFIX
from worker.handlers import handle
from worker.metrics import serve_health
from worker.reaper import Reaper


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a dir named for our own pid predates us (container restart)
    return pid_alive(pid)


def remove_stale_temp_dirs(tmp_dir: str | None) -> int:
    """A worker killed mid-job leaves its temp dir behind; clear those of dead workers."""
    base = Path(tmp_dir or tempfile.gettempdir())
    removed = 0
    for path in base.glob(f"{TMP_PREFIX}*"):
        pid_part = path.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if not pid_part.isdigit() or _alive(int(pid_part)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def migrate_in_child() -> int:
    """Run the start-up set-up (schema to head, bucket) in a child process and wait for
    it; its exit status. Alembic, the migration scripts and boto3 live and die in the
    child instead of staying in the worker's memory.
    """
    return subprocess.run([sys.executable, "-m", "shared.migrate"], check=False).returncode


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger("worker")
    status = migrate_in_child()
    if status != 0:
        log.error(
            "migration_failed",
            exit_status=status,
            hint="`python -m shared.migrate` could not set up the schema or the bucket; see its log above",
        )
        return 1
    engine = make_engine(settings)
    storage = Storage(settings)
    removed = remove_stale_temp_dirs(settings.tmp_dir)
    if removed:
        log.info("stale_temp_dirs_removed", count=removed)

    ctx = JobContext(settings=settings, engine=engine, storage=storage, events=Publisher(settings))
    consumer = Consumer(settings, functools.partial(handle, ctx=ctx), stop=ctx.stopping)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if consumer.stopping:
            log.warning("second_signal_exiting_now", signal=signum)
            os._exit(1)  # unacked messages go back to the queue
        log.info("shutdown_requested", signal=signal.Signals(signum).name, running=consumer.busy)
        consumer.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.worker_metrics_port:
        serve_health(
            settings.worker_metrics_port, consumer.alive, concurrency=settings.worker_concurrency
        )
    log.info("worker_started", concurrency=settings.worker_concurrency, queue=settings.queue_name)
    reaper = Reaper(settings, engine, storage, Publisher(settings))
    if settings.reaper_interval_s > 0:
        reaper.start()
    consumer.run()
    reaper.stop()
    engine.dispose()
    if consumer.busy:
        log.warning("exiting_with_unfinished_jobs", running=consumer.busy)
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
