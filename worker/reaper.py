"""Housekeeping every worker runs in the background, safe to run in many workers at once.

- A job said to be "processing" whose lease was not renewed (its worker died or hung) is
  put back (a split job, whose segments may wait in the queue unrenewed, after
  `unclaimed_after_s`): new dispatch token, status queued, a fresh message published. The broker's
  own redelivery of the old message, if any, carries the old token and is ignored.
  One already started `delivery_limit` times fails with `worker_crashed` instead: a job
  that kills every worker that runs it ends rather than looping.
- A queued job whose message the broker never confirmed (the API died between insert and
  publish) is published.
- A queued job published `unclaimed_after_s` ago and never claimed since (its message was
  dead-lettered during a database outage, or purged) is published again, same token.
- Uploads never used for a job are deleted (object and row) once their URL has expired;
  multipart uploads left unfinished past ``multipart_expires_s`` are aborted in storage
  (shared/multipart.py), whether or not a row records them.
- Retention (worker/retention.py): expired MP3s and the inputs of finished jobs are
  deleted, and their job rows marked.

Each step claims rows with a guarded UPDATE, so two workers never redispatch the same job.
A failed publish leaves the job queued and unpublished: the next pass sends it.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from shared import dispatch, job_recovery, multipart, uploads
from shared.config import Settings
from shared.errors import AppError
from shared.models import JobStatus, utcnow
from shared.queue import Publisher, delivery_limit
from shared.storage import Storage
from worker import retention

log = structlog.get_logger("worker.reaper")


class Reaper:
    def __init__(
        self, settings: Settings, engine: Engine, storage: Storage, publisher: Publisher
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.storage = storage
        self.publisher = publisher
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="reaper")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.publisher.close_quietly()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.reaper_interval_s):
            try:
                self.run_once()
            except (SQLAlchemyError, AppError):
                log.warning("reaper_pass_failed", exc_info=True)

    def run_once(self) -> dict[str, int]:
        now = utcnow()
        counts = {"stale": 0, "crashed": 0, "unpublished": 0, "unclaimed": 0, "uploads_removed": 0}
        with Session(self.engine) as session:
            lease_cutoff = now - timedelta(seconds=self.settings.job_lease_s)
            split_cutoff = now - timedelta(seconds=self.settings.unclaimed_after_s)
            for job_id in job_recovery.stale_processing(
                session=session, older_than=lease_cutoff, split_older_than=split_cutoff
            ):
                if job_recovery.fail_crashed(
                    session=session,
                    job_id=job_id,
                    older_than=lease_cutoff,
                    max_runs=delivery_limit(self.settings),
                ):
                    counts["crashed"] += 1
                    log.warning("crashed_job_failed", job_id=job_id)
                elif dispatch.redispatch(
                    session=session,
                    publisher=self.publisher,
                    job_id=job_id,
                    expect_status=JobStatus.processing,
                    older_than=lease_cutoff,
                ):
                    counts["stale"] += 1
                    log.warning("stale_job_requeued", job_id=job_id)
            publish_cutoff = now - timedelta(seconds=self.settings.unpublished_after_s)
            for job_id in job_recovery.unpublished(session=session, older_than=publish_cutoff):
                if dispatch.redispatch(
                    session=session,
                    publisher=self.publisher,
                    job_id=job_id,
                    expect_status=JobStatus.queued,
                    older_than=publish_cutoff,
                ):
                    counts["unpublished"] += 1
                    log.warning("unpublished_job_published", job_id=job_id)
            unclaimed_cutoff = now - timedelta(seconds=self.settings.unclaimed_after_s)
            for job_id in job_recovery.unclaimed(session=session, older_than=unclaimed_cutoff):
                if dispatch.republish(
                    session=session,
                    publisher=self.publisher,
                    job_id=job_id,
                    older_than=unclaimed_cutoff,
                ):
                    counts["unclaimed"] += 1
                    log.warning("unclaimed_job_republished", job_id=job_id)
            for upload in uploads.expired_unused_uploads(session=session, now=now):
                if upload.multipart_id is not None and upload.completed_at is None:
                    self.storage.abort_multipart(upload.key, upload_id=upload.multipart_id)
                self.storage.delete(upload.key)
                uploads.delete_upload(session=session, upload_id=upload.id)
                counts["uploads_removed"] += 1
            counts["multipart_aborted"] = multipart.abort_abandoned(
                storage=self.storage, settings=self.settings, now=now
            )
            counts.update(
                retention.sweep(
                    session=session, storage=self.storage, settings=self.settings, now=now
                )
            )
        if counts["uploads_removed"]:
            log.info("expired_uploads_removed", count=counts["uploads_removed"])
        if counts["multipart_aborted"]:
            log.info("abandoned_multipart_uploads_aborted", count=counts["multipart_aborted"])
        return counts
