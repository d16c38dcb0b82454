"""The account: notification defaults and the webhook signing secret."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep
from api.errors import error_responses
from shared import notify_settings
from shared.account_schemas import AccountPublic, AccountUpdate, WebhookSecret
from shared.models import NotifySettings, User

router = APIRouter(prefix="/v1/account", tags=["account"])


def _public(user: User, row: NotifySettings) -> AccountPublic:
    return AccountPublic(
        id=user.id, email=user.email, webhook_url=row.webhook_url, notify_email=row.notify_email
    )


@router.get(
    "", response_model=AccountPublic, responses=error_responses(401, 422), summary="Your account"
)
def get_account(user: CurrentUser, session: SessionDep) -> AccountPublic:
    """Your notification defaults: they apply to jobs created without `notify`."""
    return _public(user, notify_settings.get_row(session=session, account_id=user.id))


@router.patch(
    "",
    response_model=AccountPublic,
    responses=error_responses(401, 422),
    summary="Change your notification defaults",
)
def update_account(
    body: AccountUpdate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> AccountPublic:
    """Set `webhook_url` (null for none) and `notify_email`; fields left out stay as they are.
    A webhook URL must be http(s) on a public address (else 422 `webhook_url_not_allowed`)."""
    row = notify_settings.update(
        session=session, account_id=user.id, changes=body, settings=settings
    )
    return _public(user, row)


@router.get(
    "/webhook-secret",
    response_model=WebhookSecret,
    responses=error_responses(401, 422),
    summary="Your webhook signing secret",
)
def get_webhook_secret(user: CurrentUser, session: SessionDep) -> WebhookSecret:
    """The `whsec_…` secret webhook signatures are made with (created on first read)."""
    return WebhookSecret(
        secret=notify_settings.get_or_create_secret(session=session, account_id=user.id)
    )


@router.post(
    "/webhook-secret/rotate",
    response_model=WebhookSecret,
    responses=error_responses(401, 422),
    summary="Replace your webhook signing secret",
)
def rotate_webhook_secret(
    user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> WebhookSecret:
    """A new secret. The old one keeps signing beside it for 24 hours: deliveries then carry
    both signatures, so a receiver can switch without missing one."""
    return WebhookSecret(
        secret=notify_settings.rotate_secret(session=session, account_id=user.id, settings=settings)
    )
