"""Notifications through the API: `notify` on jobs, the account's defaults and secret,
the SSRF guard on webhook URLs, and a job's deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import deliveries, notify_settings
from shared.events import JobEvent, event_id
from shared.models import Job, utcnow
from shared.webhook_targets import WebhookTargetError, check_webhook_url
from tests.unit.conftest import make_settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

UploadFactory = Callable[..., str]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::1]:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9000/hook",  # a name that resolves to 127.0.0.1
        "http://[::ffff:10.0.0.1]/hook",
        "ftp://93.184.216.34/hook",
        "http://user:pw@93.184.216.34/hook",
        "https://no-such-host.invalid/hook",
    ],
)
def test_webhook_url_to_a_non_public_target_is_refused(url: str) -> None:
    with pytest.raises(WebhookTargetError) as caught:
        check_webhook_url(url, allow_private=False)
    assert caught.value.code == "webhook_url_not_allowed"
    assert caught.value.status_code == 422


def test_webhook_url_on_a_public_address_is_accepted() -> None:
    assert check_webhook_url("https://93.184.216.34/hook", allow_private=False)


def test_private_targets_are_accepted_when_allowed_for_development() -> None:
    assert check_webhook_url("http://127.0.0.1:8000/hook", allow_private=True)


def test_production_settings_refuse_private_webhook_targets() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_ALLOW_PRIVATE_TARGETS"):
        make_settings(
            environment="production",
            s3_secret_key="a-real-secret-key",
            jwt_secret="x" * 40,
            auth_required=True,
            webhook_allow_private_targets=True,
        )


def test_job_with_a_loopback_webhook_is_422_webhook_url_not_allowed(
    client: TestClient, uploaded: UploadFactory
) -> None:
    upload_id = uploaded()
    response = client.post(
        "/v1/jobs",
        json={"upload_id": upload_id, "notify": {"webhook_url": "http://127.0.0.1:8080/h"}},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "webhook_url_not_allowed"


def test_job_keeps_the_notify_fields_it_was_given(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    response = client.post(
        "/v1/jobs",
        json={"upload_id": uploaded(), "notify": {"webhook_url": "https://93.184.216.34/h"}},
    )
    assert response.status_code == 202, response.text
    with Session(engine) as session:
        job = session.get(Job, response.json()["id"])
        assert job is not None
        assert job.notify == {"webhook_url": "https://93.184.216.34/h"}


def test_account_defaults_can_be_read_and_changed(client: TestClient) -> None:
    before = client.get("/v1/account").json()
    assert before["webhook_url"] is None
    assert before["notify_email"] is False

    changed = client.patch(
        "/v1/account", json={"webhook_url": "https://93.184.216.34/h", "notify_email": True}
    )
    assert changed.status_code == 200, changed.text
    assert client.get("/v1/account").json()["webhook_url"] == "https://93.184.216.34/h"

    cleared = client.patch("/v1/account", json={"webhook_url": None}).json()
    assert cleared["webhook_url"] is None
    assert cleared["notify_email"] is True


def test_account_webhook_url_on_a_private_address_is_422(client: TestClient) -> None:
    response = client.patch("/v1/account", json={"webhook_url": "http://10.0.0.7/h"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "webhook_url_not_allowed"


def test_webhook_secret_is_stable_until_rotated_and_the_old_one_keeps_signing(
    client: TestClient, engine: Engine
) -> None:
    first = client.get("/v1/account/webhook-secret").json()["secret"]
    assert first.startswith("whsec_")
    assert client.get("/v1/account/webhook-secret").json()["secret"] == first

    rotated = client.post("/v1/account/webhook-secret/rotate").json()["secret"]
    assert rotated != first
    assert client.get("/v1/account/webhook-secret").json()["secret"] == rotated
    account_id = client.get("/v1/account").json()["id"]
    with Session(engine) as session:
        assert notify_settings.signing_secrets(session=session, account_id=account_id) == [
            rotated,
            first,
        ]
        row = notify_settings.get_row(session=session, account_id=account_id)
        row.previous_secret_until = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
        assert notify_settings.signing_secrets(session=session, account_id=account_id) == [rotated]


def _job_with_event(client: TestClient, uploaded: UploadFactory, engine: Engine) -> str:
    created = client.post(
        "/v1/jobs",
        json={"upload_id": uploaded(), "notify": {"webhook_url": "https://93.184.216.34/h"}},
    ).json()
    with Session(engine, expire_on_commit=False) as session:
        job = session.get(Job, created["id"])
        assert job is not None
        event = JobEvent(
            id=event_id(job.id, job.dispatch_token, "job.completed"),
            type="job.completed",
            job_id=job.id,
            at=utcnow(),
        )
        assert len(deliveries.record_event(session=session, event=event)) == 1
        assert deliveries.record_event(session=session, event=event) == []  # redelivered
        return event.job_id


def test_failed_attempts_schedule_retries_until_the_last_attempt(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    settings = make_settings(notify_max_attempts=3, notify_backoff_base_s=0.001)
    job_id = _job_with_event(client, uploaded, engine)
    with Session(engine, expire_on_commit=False) as session:
        for attempt in (1, 2, 3):
            later = utcnow() + timedelta(seconds=1)
            (row,) = deliveries.claim_due(session=session, settings=settings, now=later)
            assert row.attempt == attempt
            deliveries.record_outcome(
                session=session, settings=settings, delivery=row, ok=False, status_code=500
            )
        assert deliveries.claim_due(session=session, settings=settings, now=later) == []

    items = client.get(f"/v1/jobs/{job_id}/deliveries").json()["items"]
    assert [(i["attempt"], i["status"], i["status_code"]) for i in items] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "failed", 500),
    ]
    assert items[0]["next_retry_at"] is not None
    assert items[2]["next_retry_at"] is None
    assert items[0]["url_host"] == "93.184.216.34"
    assert len({i["event_id"] for i in items}) == 1

    retried = client.post(f"/v1/jobs/{job_id}/deliveries/{items[0]['id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["attempt"] == 4
    assert retried.json()["status"] == "pending"
    assert retried.json()["event_id"] == items[0]["event_id"]


def test_delivery_claimed_by_a_notifier_that_died_is_due_again_after_the_claim_timeout(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    settings = make_settings(notify_claim_timeout_s=60)
    _job_with_event(client, uploaded, engine)
    with Session(engine, expire_on_commit=False) as session:
        now = utcnow()
        (claimed,) = deliveries.claim_due(session=session, settings=settings, now=now)
        assert deliveries.claim_due(session=session, settings=settings, now=now) == []
        later = now + timedelta(seconds=61)
        (again,) = deliveries.claim_due(session=session, settings=settings, now=later)
        assert again.id == claimed.id


def test_deliveries_of_another_accounts_job_are_404(client: TestClient) -> None:
    response = client.get("/v1/jobs/no-such-job/deliveries")
    assert response.status_code == 404
    assert client.post("/v1/jobs/no-such-job/deliveries/x/retry").status_code == 404


def test_backoff_spreads_eight_attempts_over_about_a_day() -> None:
    settings = make_settings()
    total = sum(deliveries.backoff_s(settings, n) for n in range(1, settings.notify_max_attempts))
    assert settings.notify_max_attempts == 8
    assert 18 * 3600 < total < 30 * 3600


def test_sweep_records_the_event_of_a_finished_job_whose_event_never_arrived(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    # Given a job that finished with a webhook asked for, and no event recorded for it
    created = client.post(
        "/v1/jobs",
        json={"upload_id": uploaded(), "notify": {"webhook_url": "https://93.184.216.34/h"}},
    ).json()
    with Session(engine, expire_on_commit=False) as session:
        job = session.get(Job, created["id"])
        assert job is not None
        job.status, job.finished_at = "completed", utcnow() - timedelta(minutes=5)
        session.add(job)
        session.commit()
        window = (utcnow() - timedelta(hours=1), utcnow() - timedelta(minutes=1))

        # When the notifier sweeps the window
        recorded, covered = deliveries.record_missed_events(
            session=session, finished_after=window[0], finished_before=window[1]
        )

        # Then the event is recorded with the id the worker would have published
        assert (recorded, covered) == (1, window[1])
        (row,) = deliveries.list_for_job(session=session, job_id=job.id)
        assert row.event_id == event_id(job.id, job.dispatch_token, "job.completed")
        # and a second sweep, or the late event itself, records nothing more
        assert deliveries.record_missed_events(
            session=session, finished_after=window[0], finished_before=window[1]
        ) == (0, window[1])
        late = JobEvent(id=row.event_id, type="job.completed", job_id=job.id, at=utcnow())
        assert deliveries.record_event(session=session, event=late) == []


def test_sweep_covers_a_long_window_in_pages_oldest_first(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    finished = []
    for minutes in (30, 20, 10):
        created = client.post(
            "/v1/jobs", json={"upload_id": uploaded(), "notify": {"email": True}}
        ).json()
        with Session(engine) as session:
            job = session.get(Job, created["id"])
            assert job is not None
            job.status, job.finished_at = "failed", utcnow() - timedelta(minutes=minutes)
            finished.append(job.finished_at)
            session.add(job)
            session.commit()
    with Session(engine, expire_on_commit=False) as session:
        start, end = utcnow() - timedelta(hours=1), utcnow()
        recorded, covered = deliveries.record_missed_events(
            session=session, finished_after=start, finished_before=end, limit=2
        )
        assert recorded == 2
        assert covered == finished[1]
        assert deliveries.record_missed_events(
            session=session, finished_after=covered, finished_before=end, limit=2
        ) == (1, end)
