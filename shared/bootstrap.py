"""The first account of a deployment, created from settings at start-up.

Compose and Kubernetes always require a login and offer no sign-up, so a fresh
deployment needs one account to sign in with. `V2M_BOOTSTRAP_ADMIN_EMAIL` and
`V2M_BOOTSTRAP_ADMIN_PASSWORD` (from a secret) name it. It is created once: when an
account with that email exists, nothing changes (a password changed since stays
changed), and two processes starting together both end with the one account.
"""

from __future__ import annotations

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import users
from shared.config import Settings
from shared.errors import ConflictError

log = structlog.get_logger("bootstrap")

MIN_PASSWORD_LENGTH = 8


def ensure_bootstrap_admin(engine: Engine, settings: Settings) -> bool:
    """Create the bootstrap account if settings name one and it does not exist yet.

    Returns True when this call created it.
    """
    email, secret = settings.bootstrap_admin_email, settings.bootstrap_admin_password
    if not email or secret is None:
        return False
    password = secret.get_secret_value()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"V2M_BOOTSTRAP_ADMIN_PASSWORD must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    with Session(engine) as session:
        if users.get_user_by_email(session=session, email=email) is not None:
            return False
        try:
            user = users.create_user(session=session, email=email, password=password)
        except ConflictError:
            return False  # another process created it first
        log.info("bootstrap_admin_created", user_id=str(user.id))
        return True
