"""The fakes stay interchangeable with the real adapters they stand in for."""

from __future__ import annotations

import inspect

import pytest

from shared.errors import QueueError, StorageError
from shared.queue import JobMessage, Publisher
from shared.storage import Storage
from tests.fakes import FakePublisher, FakeStorage


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("real", "fake"), [(Storage, FakeStorage), (Publisher, FakePublisher)])
def test_fake_has_every_public_method_with_the_same_signature(real: type, fake: type) -> None:
    fake_methods = public_methods(fake)

    for name, signature in public_methods(real).items():
        assert name in fake_methods, f"{fake.__name__} lacks {name}"
        assert str(fake_methods[name]) == str(signature), name


def test_failing_fake_storage_raises_storage_error_everywhere() -> None:
    storage = FakeStorage()
    storage.fail = True
    calls = [
        lambda: storage.presign_put("k", content_type="video/mp4", size_bytes=1, expires_s=1),
        lambda: storage.presign_download("k", filename="a.mp4", expires_s=1),
        lambda: storage.presign_internal_get("k", expires_s=1),
        lambda: storage.stat("k"),
        lambda: storage.upload_file("/nonexistent", "k", content_type="audio/mpeg"),
        lambda: storage.delete("k"),
        storage.ping,
        storage.ensure_bucket,
    ]

    for call in calls:
        with pytest.raises(StorageError):
            call()


def test_failing_fake_publisher_raises_queue_error_and_records_nothing() -> None:
    publisher = FakePublisher()
    publisher.fail = True

    with pytest.raises(QueueError):
        publisher.publish(JobMessage(job_id="a"))
    assert publisher.messages == []


def test_fake_presigned_put_accepts_only_the_signed_headers() -> None:
    storage = FakeStorage()
    url, headers = storage.presign_put(
        "uploads/x/a b.mp4", content_type="video/mp4", size_bytes=3, expires_s=60
    )

    with pytest.raises(AssertionError):
        storage.put_presigned(url, b"abc", {**headers, "Content-Type": "video/webm"})
    storage.put_presigned(url, b"abc", headers)

    assert storage.key_of(url) == "uploads/x/a b.mp4"
    info = storage.stat("uploads/x/a b.mp4")
    assert info is not None and info.size_bytes == 3
