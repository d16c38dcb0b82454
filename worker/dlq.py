"""Inspect and replay the dead-letter queue.

    python -m worker.dlq list                 what is dead-lettered, with each job's state
    python -m worker.dlq replay --all         put every failed job back in the queue
    python -m worker.dlq replay JOB_ID ...    only these jobs
    python -m worker.dlq purge-poison         drop messages that are not job messages

Replaying resets the job's attempts and gives it a new dispatch token, then acks the dead
letter. A letter is replayed when its job failed, or is still queued (its message was
dead-lettered while the job waited, e.g. during a database outage); it is dropped only when
its job completed or no longer exists, and left in place while its job is processing.
Messages are read with basic_get without ack: whatever is not replayed or dropped
returns to the dead-letter queue when the channel closes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pika
from sqlmodel import Session

from shared import dispatch
from shared.config import get_settings
from shared.db import make_engine
from shared.models import Job, JobStatus, utcnow
from shared.queue import JobMessage, Publisher, connection_parameters, declare_topology


@dataclass
class DeadLetter:
    tag: int
    body: bytes
    reason: str
    message: JobMessage | None


def _reason(props: Any) -> str:
    deaths = (props.headers or {}).get("x-death") or []
    return str(deaths[0].get("reason", "?")) if deaths else "?"


def read_all(channel: Any, queue: str) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    while True:
        method, props, body = channel.basic_get(queue=queue, auto_ack=False)
        if method is None:
            return letters
        try:
            message: JobMessage | None = JobMessage.decode(body)
        except ValueError:
            message = None
        letters.append(DeadLetter(method.delivery_tag, body, _reason(props), message))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.dlq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show dead-lettered messages")
    replay = sub.add_parser("replay", help="requeue failed jobs")
    replay.add_argument("job_ids", nargs="*")
    replay.add_argument("--all", action="store_true", help="replay every dead-lettered job")
    sub.add_parser("purge-poison", help="drop dead letters that are not job messages")
    args = parser.parse_args(argv)
    if args.command == "replay" and not args.all and not args.job_ids:
        parser.error("name job ids, or --all")

    settings = get_settings()
    engine = make_engine(settings)
    conn = pika.BlockingConnection(connection_parameters(settings))
    channel = conn.channel()
    names = declare_topology(channel, settings)
    publisher = Publisher(settings)
    done = 0
    try:
        letters = read_all(channel, names.dlq)
        with Session(engine, expire_on_commit=False) as session:
            if args.command == "list":
                print(f"{len(letters)} message(s) in {names.dlq}")
                print(f"{'job_id':36}  {'reason':10}  {'status':10}  {'attempts':8}  error")
                for letter in letters:
                    if letter.message is None:
                        print(
                            f"{'(not a job message)':36}  {letter.reason:10}  {'-':10}  {'-':8}  {letter.body[:40]!r}"
                        )
                        continue
                    job = session.get(Job, letter.message.job_id)
                    if job is None:
                        print(f"{letter.message.job_id:36}  {letter.reason:10}  {'unknown':10}")
                        continue
                    print(
                        f"{job.id:36}  {letter.reason:10}  {job.status:10}  {job.attempts:<8}  {job.error_code or ''}"
                    )
                return 0
            for letter in letters:
                if args.command == "purge-poison":
                    if letter.message is None:
                        channel.basic_ack(letter.tag)
                        done += 1
                    continue
                message = letter.message
                if message is None or not (args.all or message.job_id in args.job_ids):
                    continue
                job = session.get(Job, message.job_id)
                if job is None or job.status == JobStatus.completed:
                    channel.basic_ack(letter.tag)  # nothing left to do for it
                    continue
                if job.status == JobStatus.processing:
                    # Running, or its lease will lapse and the reaper puts it back.
                    print(f"left {job.id}: still processing")
                    continue
                replayed = dispatch.redispatch(
                    session=session,
                    publisher=publisher,
                    job_id=job.id,
                    expect_status=JobStatus(job.status),
                    older_than=utcnow() + timedelta(seconds=1),
                    reset_attempts=True,
                )
                if not replayed:
                    continue
                channel.basic_ack(letter.tag)
                done += 1
                print(f"replayed {job.id}")
        print(f"{done} message(s) {'dropped' if args.command == 'purge-poison' else 'replayed'}")
        return 0
    finally:
        publisher.close_quietly()
        if conn.is_open:
            conn.close()
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
