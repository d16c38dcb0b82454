"""A split job's segments: one row per range of the input, encoded by any worker.

A split job stays ``processing`` while its segments run; each segment row is claimed,
renewed and finished under the job's dispatch token, like the job itself
(shared/job_transitions.py). Finishing a segment and counting it on the job happen in one
transaction, and the count comes back from the same UPDATE (… RETURNING): on SQLite and
PostgreSQL alike exactly one worker sees the last one done, and that worker joins.
A job re-dispatched under a new token is split again from scratch; messages and rows of
the old token are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, String, delete, update
from sqlmodel import Field, Session, SQLModel, col, select

from shared.models import Job, JobStatus, utcnow


class SegmentState(StrEnum):
    queued = "queued"
    processing = "processing"
    done = "done"


class JobSegment(SQLModel, table=True):
    __tablename__ = "job_segment"

    job_id: str = Field(
        sa_column=Column(String(36), ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    )
    idx: int = Field(primary_key=True)
    token: str = Field(max_length=36)  # the job's dispatch token when it was split
    state: str = Field(default=SegmentState.queued, max_length=16)
    attempts: int = 0
    sample_rate: int  # the input's, which the output keeps
    start_sample: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_sample: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    part_key: str | None = Field(default=None, max_length=512)
    padding: int | None = None  # the last segment's trailing padding (samples)
    # Its share of the output's loudness: the momentary loudness (LUFS) of the 400 ms
    # blocks that start in its range, and its true peak (linear).
    loudness_blocks: list[float] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    true_peak: float | None = None
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


@dataclass(frozen=True)
class Range:
    start_sample: int
    end_sample: int | None  # None: to the input's end


def _update() -> Any:
    return update(JobSegment).execution_options(synchronize_session=False)


def _job_update() -> Any:
    return update(Job).execution_options(synchronize_session=False)


def _running_job(job_id: str, token: str) -> list[Any]:
    return [
        col(Job.id) == job_id,
        col(Job.dispatch_token) == token,
        col(Job.status) == JobStatus.processing,
    ]


def create(
    *, session: Session, job_id: str, token: str, ranges: list[Range], sample_rate: int
) -> bool:
    """Replace the job's segments by ``ranges`` under ``token``; False (nothing written)
    when the job is no longer processing under that token."""
    owned = session.execute(
        _job_update()
        .where(*_running_job(job_id, token))
        .values(segments_total=len(ranges), segments_done=0, progress=0, updated_at=utcnow())
    )
    if not owned.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return False
    session.execute(delete(JobSegment).where(col(JobSegment.job_id) == job_id))
    for index, part in enumerate(ranges):
        session.add(
            JobSegment(
                job_id=job_id,
                idx=index,
                token=token,
                sample_rate=sample_rate,
                start_sample=part.start_sample,
                end_sample=part.end_sample,
            )
        )
    session.commit()
    return True


def get(*, session: Session, job_id: str, index: int) -> JobSegment | None:
    return session.get(JobSegment, (job_id, index))


def all_of(*, session: Session, job_id: str) -> list[JobSegment]:
    rows = session.exec(
        select(JobSegment).where(col(JobSegment.job_id) == job_id).order_by(col(JobSegment.idx))
    ).all()
    return list(rows)


def _ours(job_id: str, index: int, token: str) -> list[Any]:
    return [
        col(JobSegment.job_id) == job_id,
        col(JobSegment.idx) == index,
        col(JobSegment.token) == token,
    ]


def start(
    *, session: Session, job_id: str, index: int, token: str, lease_cutoff: datetime
) -> JobSegment | None:
    """Claim a queued segment (or one whose worker stopped renewing it); None otherwise."""
    claimable = (col(JobSegment.state) == SegmentState.queued) | (
        (col(JobSegment.state) == SegmentState.processing)
        & (col(JobSegment.updated_at) < lease_cutoff)
    )
    row = session.scalars(
        _update()
        .where(*_ours(job_id, index, token), claimable)
        .values(
            state=SegmentState.processing, attempts=JobSegment.attempts + 1, updated_at=utcnow()
        )
        .returning(JobSegment)
        .execution_options(populate_existing=True)
    ).first()
    session.commit()
    return row


def heartbeat(*, session: Session, job_id: str, index: int, token: str) -> None:
    """Renew the segment's lease and its job's (the reaper watches the job)."""
    now = utcnow()
    session.execute(
        _update()
        .where(*_ours(job_id, index, token), col(JobSegment.state) == SegmentState.processing)
        .values(updated_at=now)
    )
    session.execute(_job_update().where(*_running_job(job_id, token)).values(updated_at=now))
    session.commit()


def release(*, session: Session, job_id: str, index: int, token: str) -> None:
    """Back to queued, for its retry message to claim."""
    session.execute(
        _update()
        .where(*_ours(job_id, index, token), col(JobSegment.state) == SegmentState.processing)
        .values(state=SegmentState.queued, updated_at=utcnow())
    )
    session.commit()


@dataclass(frozen=True)
class Result:
    part_key: str
    padding: int
    loudness_blocks: list[float]
    true_peak: float


def finish(
    *, session: Session, job_id: str, index: int, token: str, result: Result
) -> tuple[int, int] | None:
    """Mark the segment done and count it on its job, in one transaction: the job's
    (done, total) after this one, or None when it was not ours to finish (done already,
    or the job moved on)."""
    marked = session.execute(
        _update()
        .where(*_ours(job_id, index, token), col(JobSegment.state) == SegmentState.processing)
        .values(
            state=SegmentState.done,
            part_key=result.part_key,
            padding=result.padding,
            loudness_blocks=result.loudness_blocks,
            true_peak=result.true_peak,
            updated_at=utcnow(),
        )
    )
    if not marked.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return None
    counts = session.execute(
        _job_update()
        .where(*_running_job(job_id, token))
        .values(
            segments_done=Job.segments_done + 1,
            progress=(col(Job.segments_done) + 1) * 99 // col(Job.segments_total),
            updated_at=utcnow(),
        )
        .returning(Job.segments_done, Job.segments_total)
    ).first()
    if counts is None:
        session.rollback()
        return None
    session.commit()
    done, total = counts
    return int(done), int(total or 0)
