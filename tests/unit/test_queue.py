"""shared.queue without a broker: the message format, queue names, backoff."""

from __future__ import annotations

import json

import pytest

from shared.queue import JobMessage, backoff_ms, queue_names
from tests.unit.conftest import make_settings


def test_job_message_round_trips() -> None:
    message = JobMessage(job_id="abc", attempt=3, token="t-1")

    decoded = JobMessage.decode(message.encode())

    assert decoded == message
    assert json.loads(message.encode()) == {"v": 1, "job_id": "abc", "attempt": 3, "token": "t-1"}


def test_job_message_defaults_to_first_attempt() -> None:
    assert JobMessage.decode(b'{"job_id": "abc"}').attempt == 1


def test_job_message_ignores_unknown_fields() -> None:
    assert JobMessage.decode(b'{"job_id": "abc", "trace": "x"}').job_id == "abc"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\xfd",
        b"[]",
        b"null",
        b"42",
        b'{"attempt": 2}',
        b'{"job_id": null}',
        b'{"job_id": "abc", "attempt": "many"}',
    ],
)
def test_job_message_decode_refuses_junk_with_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="not a job message"):
        JobMessage.decode(body)


def test_queue_names_derive_from_the_base_name() -> None:
    names = queue_names("transcode")

    assert names.main == "transcode"
    assert names.dlq == "transcode.dlq"
    assert [names.retry(n) for n in (1, 2, 3)] == [
        "transcode.retry.1",
        "transcode.retry.2",
        "transcode.retry.3",
    ]


def test_queue_names_of_different_bases_do_not_collide() -> None:
    a, b = queue_names("transcode-test-1"), queue_names("transcode-test-2")

    assert {a.main, a.dlq, a.retry(1)}.isdisjoint({b.main, b.dlq, b.retry(1)})


def test_backoff_doubles_from_the_base() -> None:
    settings = make_settings(retry_backoff_base_s=2.0, retry_backoff_max_s=300.0)

    assert [backoff_ms(settings, n) for n in (1, 2, 3, 4)] == [2000, 4000, 8000, 16000]


def test_backoff_is_capped() -> None:
    settings = make_settings(retry_backoff_base_s=2.0, retry_backoff_max_s=10.0)

    assert [backoff_ms(settings, n) for n in (3, 4, 5, 30)] == [8000, 10000, 10000, 10000]


def test_segment_message_round_trips_with_its_index() -> None:
    message = JobMessage(job_id="abc", token="t-1", segment=2)

    assert JobMessage.decode(message.encode()) == message
    assert json.loads(message.encode())["segment"] == 2
