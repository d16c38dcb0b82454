"""Accounts and API keys: create, look up, revoke. Used by the API and the admin CLI.

Every request reads its credential from the database, so a revoked key or a deactivated
account stops working at once in every API process.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.config import Settings
from shared.errors import AuthError, ConflictError, NotFoundError
from shared.models import ApiKey, User, as_utc, utcnow
from shared.security import generate_api_key, hash_api_key, hash_password, verify_password

LAST_USED_RESOLUTION = timedelta(minutes=1)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(*, session: Session, email: str, password: str | None = None) -> User:
    user = User(
        email=normalise_email(email),
        password_hash=hash_password(password) if password else None,
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError("A user with that email exists.", code="user_exists") from exc
    return user


def set_password_hash(*, session: Session, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    session.add(user)
    session.commit()


def get_user_by_email(*, session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == normalise_email(email))).first()


def require_user(*, session: Session, email: str) -> User:
    user = get_user_by_email(session=session, email=email)
    if user is None:
        raise NotFoundError(f"No user has the email {email!r}.", code="user_not_found")
    return user


def create_api_key(
    *, session: Session, user: User, name: str, plaintext: str | None = None
) -> tuple[ApiKey, str]:
    """A new key for ``user``; the plaintext is returned once and never stored."""
    key = plaintext or generate_api_key()
    record = ApiKey(user_id=user.id, name=name[:100], key_hash=hash_api_key(key), prefix=key[:12])
    session.add(record)
    session.commit()
    return record, key


def revoke_api_key(*, session: Session, key_id: str) -> ApiKey:
    record = session.get(ApiKey, key_id)
    if record is None:
        raise NotFoundError("No API key has that id.", code="api_key_not_found")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
        session.commit()
    return record


def authenticate_api_key(*, session: Session, key: str) -> User:
    """The active user a valid, unrevoked key belongs to; AuthError otherwise.

    The key's use is recorded at most once a minute (`last_used_at`), not per request."""
    row = session.exec(
        select(ApiKey, User)
        .join(User, col(User.id) == ApiKey.user_id)
        .where(ApiKey.key_hash == hash_api_key(key))
    ).first()
    if row is None:
        raise AuthError("The API key is not valid or has been revoked.")
    record, user = row
    if record.revoked_at is not None or not user.is_active:
        raise AuthError("The API key is not valid or has been revoked.")
    last = as_utc(record.last_used_at)
    now = utcnow()
    if last is None or now - last > LAST_USED_RESOLUTION:
        session.execute(
            update(ApiKey)
            .where(
                col(ApiKey.id) == record.id,
                col(ApiKey.last_used_at).is_(None)
                | (col(ApiKey.last_used_at) < now - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return user


def active_user(*, session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise AuthError("The account is not active.")
    return user


def get_or_create_user(*, session: Session, email: str) -> User:
    """The user with this email, created without a password if there is none; a
    concurrent request creating the same user is not an error."""
    user = get_user_by_email(session=session, email=email)
    if user is not None:
        return user
    try:
        return create_user(session=session, email=email)
    except ConflictError:
        user = get_user_by_email(session=session, email=email)
        if user is None:
            raise
        return user


def ensure_dev_user(*, session: Session, settings: Settings) -> User:
    """The local development user of `make run`, with V2M_DEV_API_KEY / V2M_DEV_PASSWORD
    (the settings refuse both in production). Run once at start-up: the password is
    hashed only when the stored hash does not already match it."""
    user = get_or_create_user(session=session, email=settings.dev_user_email)
    password = settings.dev_password
    if password and not verify_password(password, user.password_hash):
        set_password_hash(session=session, user=user, password_hash=hash_password(password))
    if settings.dev_api_key:
        existing = session.exec(
            select(ApiKey).where(ApiKey.key_hash == hash_api_key(settings.dev_api_key))
        ).first()
        if existing is None:
            create_api_key(session=session, user=user, name="dev", plaintext=settings.dev_api_key)
        elif existing.user_id != user.id or existing.revoked_at is not None:
            raise ConflictError(
                "V2M_DEV_API_KEY belongs to another user or was revoked.", code="dev_key_conflict"
            )
    return user
