"""An account's notification defaults and webhook secrets, and what a job's event goes to.

Secrets are `whsec_` + base64 of 32 random bytes, the Standard Webhooks form. They are
kept in the database as they are (the notifier needs them to sign). Rotating keeps the
previous secret signing beside the new one for `webhook_secret_overlap_s`, so receivers
can switch without dropping a delivery: the spec allows several signatures in one header.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from shared.account_schemas import AccountUpdate
from shared.config import Settings
from shared.models import Job, NotifySettings, as_utc, utcnow
from shared.webhook_targets import check_webhook_url


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def get_row(*, session: Session, account_id: str) -> NotifySettings:
    """The account's row, or an unsaved one with the defaults."""
    return session.get(NotifySettings, account_id) or NotifySettings(account_id=account_id)


def update(
    *, session: Session, account_id: str, changes: AccountUpdate, settings: Settings
) -> NotifySettings:
    """Apply the fields the request set; a webhook URL is checked before it is kept."""
    row = get_row(session=session, account_id=account_id)
    given = changes.model_fields_set
    if "webhook_url" in given:
        url = changes.webhook_url
        if url is not None:
            check_webhook_url(url, allow_private=settings.webhook_allow_private_targets)
        row.webhook_url = url
    if "notify_email" in given and changes.notify_email is not None:
        row.notify_email = changes.notify_email
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def get_or_create_secret(*, session: Session, account_id: str) -> str:
    row = get_row(session=session, account_id=account_id)
    if row.webhook_secret is None:
        row.webhook_secret = new_secret()
        session.add(row)
        session.commit()
    assert row.webhook_secret is not None
    return row.webhook_secret


def rotate_secret(*, session: Session, account_id: str, settings: Settings) -> str:
    """A new secret; the current one keeps signing beside it for the overlap."""
    row = get_row(session=session, account_id=account_id)
    if row.webhook_secret is not None:
        row.previous_secret = row.webhook_secret
        row.previous_secret_until = utcnow() + timedelta(seconds=settings.webhook_secret_overlap_s)
    row.webhook_secret = new_secret()
    session.add(row)
    session.commit()
    return row.webhook_secret


def signing_secrets(*, session: Session, account_id: str) -> list[str]:
    """The secrets a delivery is signed with now: the current one, then the previous one
    while its overlap lasts. A first delivery creates the current one."""
    current = get_or_create_secret(session=session, account_id=account_id)
    row = get_row(session=session, account_id=account_id)
    until = as_utc(row.previous_secret_until)
    if row.previous_secret and until is not None and until > utcnow():
        return [current, row.previous_secret]
    return [current]


@dataclass(frozen=True)
class Targets:
    webhook_url: str | None
    email: bool


def targets_for(*, session: Session, job: Job) -> Targets:
    """Where a job's events go: the job's `notify`, its missing fields from the account."""
    row = get_row(session=session, account_id=job.owner_id)
    notify = job.notify or {}
    webhook_url = notify["webhook_url"] if "webhook_url" in notify else row.webhook_url
    email = notify["email"] if notify.get("email") is not None else row.notify_email
    return Targets(webhook_url=webhook_url, email=bool(email))
