"""The upload probe's rules without ffprobe: tags read from ffprobe's JSON, the trim
checked at job creation against a probed duration, and the per-process probe slots."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from shared import upload_probe, users
from shared.errors import BusyError, InvalidRequestError, MediaError
from shared.media.facts import TAG_MAX_CHARS, parse_probe
from shared.models import Upload, utcnow
from shared.options import JobOptions
from shared.storage import Storage
from tests.fakes import FakeStorage, StoredObject
from tests.unit.conftest import UploadFactory, add_upload, make_settings


def probed(duration_s: float | None) -> Upload:
    return Upload(
        owner_id="u",
        key="k",
        filename="f",
        content_type="video/mp4",
        size_bytes=1,
        expires_at=None,  # type: ignore[arg-type]
        probe={"format_name": "mp4", "duration_s": duration_s},
    )


def test_tags_come_from_the_container_then_the_audio_stream_without_case() -> None:
    data: dict[str, Any] = {
        "format": {"format_name": "ogg", "tags": {"TITLE": "Song", "encoder": "x"}},
        "streams": [
            {"index": 0, "codec_type": "audio", "tags": {"ARTIST": "Ada", "title": "Other"}},
            {"index": 1, "codec_type": "video", "tags": {"comment": "Cover (front)"}},
        ],
    }

    tags = parse_probe(data).tags

    assert tags == {"title": "Song", "artist": "Ada"}


def test_a_huge_tag_is_cut_and_nul_removed() -> None:
    data = {"format": {"format_name": "mp3", "tags": {"comment": "a\x00b" + "x" * 100_000}}}

    comment = parse_probe(data).tags["comment"]

    assert len(comment) == TAG_MAX_CHARS and comment.startswith("abx")


@pytest.mark.parametrize("start_s", [30.0, 3.0])
def test_a_trim_at_or_past_the_probed_end_names_the_field(start_s: float) -> None:
    options = JobOptions.model_validate({"trim": {"start_s": start_s}})

    with pytest.raises(InvalidRequestError) as error:
        upload_probe.check_trim(probed(3.0), options)

    assert error.value.code == "trim_out_of_range"
    assert "options.trim.start_s" in error.value.message


@pytest.mark.parametrize(
    ("upload", "trim"),
    [
        (probed(3.0), {"start_s": 2.5}),
        (probed(None), {"start_s": 30}),  # duration unknown: the worker decides
        (probed(3.0), {"end_s": 30}),  # an end past the end keeps the rest
    ],
)
def test_a_trim_the_upload_can_honour_or_cannot_judge_passes(
    upload: Upload, trim: dict[str, float]
) -> None:
    upload_probe.check_trim(upload, JobOptions.model_validate({"trim": trim}))


def test_an_unprobed_upload_is_not_checked() -> None:
    upload = probed(3.0)
    upload.probe = None

    upload_probe.check_trim(upload, JobOptions.model_validate({"trim": {"start_s": 30}}))


def test_probes_past_the_concurrency_are_busy_not_queued() -> None:
    settings = make_settings(probe_concurrency=1)

    with upload_probe._slot(settings), pytest.raises(BusyError) as error:
        with upload_probe._slot(settings):
            pass

    assert error.value.code == "probe_busy"
    with upload_probe._slot(settings):  # released again
        pass


def test_job_creation_refuses_a_trim_past_a_probed_upload_and_keeps_201_otherwise(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    probed_id, unprobed_id = uploaded(), uploaded()
    with Session(engine) as session:
        row = session.get(Upload, probed_id)
        assert row is not None
        row.probe = {"format_name": "mov", "duration_s": 3.0}
        session.add(row)
        session.commit()
    trim = {"trim": {"start_s": 30}}

    refused = client.post("/v1/jobs", json={"upload_id": probed_id, "options": trim})
    accepted = client.post("/v1/jobs", json={"upload_id": unprobed_id, "options": trim})

    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "trim_out_of_range"
    assert "options.trim.start_s" in refused.json()["error"]["message"]
    assert accepted.status_code == 202, accepted.text


def fake_program(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def stored_upload(engine: Engine, storage: FakeStorage) -> None:
    """Upload "u-1", its 4 bytes in the fake bucket."""
    owner_id = ensure_owner(engine)
    with Session(engine) as session:
        add_upload(
            session=session,
            upload_id="u-1",
            owner_id=owner_id,
            key="uploads/o/u-1/a.mp4",
            filename="a.mp4",
            content_type="video/mp4",
            size_bytes=4,
            expires_at=utcnow() + timedelta(hours=1),
        )
    storage.objects["uploads/o/u-1/a.mp4"] = StoredObject(data=b"abcd", content_type="video/mp4")


def ensure_owner(engine: Engine) -> str:
    with Session(engine) as session:
        return users.get_or_create_user(session=session, email="probe@example.com").id


def test_a_probe_that_runs_out_of_time_is_503_and_tried_again_later(
    engine: Engine, storage: FakeStorage, tmp_path: Path
) -> None:
    settings = make_settings(
        ffprobe_bin=fake_program(tmp_path, "ffprobe", "sleep 5"), probe_timeout_s=0.3
    )
    stored_upload(engine, storage)

    with Session(engine) as session:
        upload = session.get(Upload, "u-1")
        assert upload is not None
        with pytest.raises(upload_probe.ProbeUnavailableError) as error:
            upload_probe.probe_upload(
                session=session, storage=cast(Storage, storage), settings=settings, upload=upload
            )

    assert (error.value.status_code, error.value.code) == (503, "probe_unavailable")
    with Session(engine) as session:
        row = session.get(Upload, "u-1")
        assert row is not None and row.probe is None and row.probe_error is None


def test_output_that_is_not_ffprobe_json_is_a_stored_422(
    engine: Engine, storage: FakeStorage, tmp_path: Path
) -> None:
    settings = make_settings(ffprobe_bin=fake_program(tmp_path, "ffprobe", "echo '[1, 2'"))
    stored_upload(engine, storage)

    with Session(engine) as session:
        upload = session.get(Upload, "u-1")
        assert upload is not None
        for _ in range(2):  # the second answer comes from the row
            with pytest.raises(MediaError) as error:
                upload_probe.probe_upload(
                    session=session,
                    storage=cast(Storage, storage),
                    settings=settings,
                    upload=upload,
                )
            assert (error.value.status_code, error.value.code) == (422, "unsupported_media")
        settings.ffprobe_bin = "/nonexistent"  # a third ffprobe run would crash the test
        with pytest.raises(MediaError):
            upload_probe.probe_upload(
                session=session, storage=cast(Storage, storage), settings=settings, upload=upload
            )
