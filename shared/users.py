"""Accounts and API keys: create, look up, revoke. Used by the API and the admin CLI.

The API resolves credentials through two small in-process caches (API key hash -> user,
user id -> user) that keep an answer for `auth_cache_ttl_s` seconds. Revoking a key here
drops it from this process's cache at once; other processes keep serving a cached answer
until it expires (docs/SECURITY.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy import bindparam, func, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.config import Settings
from shared.db import write_transaction
from shared.errors import AuthError, ConflictError, NotFoundError
from shared.models import ApiKey, LoginFailure, User, as_utc, utcnow
from shared.security import generate_api_key, hash_api_key, hash_password

LAST_USED_RESOLUTION = timedelta(minutes=1)

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A small thread-safe LRU whose entries expire `ttl_s` seconds after they were put.

    `put` is refused when the cache was invalidated (`discard`, `clear`) after the
    caller read `generation`: a lookup that started before a revocation cannot put its
    stale answer back afterwards.
    """

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self.generation = 0
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, ttl_s: float) -> V | None:
        if ttl_s <= 0:
            return None
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self.clock() - item[0] >= ttl_s:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: K, value: V, *, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            self._items[key] = (self.clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        with self._lock:
            self.generation += 1
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class AuthUser:
    """The caller as the API sees it: immutable, so cached requests can share one."""

    id: str
    email: str
    created_at: datetime
    uploads_per_minute: int | None
    max_active_jobs: int | None
    bytes_per_day: int | None

    @classmethod
    def of(cls, user: User) -> AuthUser:
        return _auth_user(user)


@dataclass
class KeyGrant:
    """A valid API key's user, and when the key's use was last recorded (unix s)."""

    user: AuthUser
    key_id: str
    last_used_at: float | None
    touch_requested_at: float = 0.0

    def touch_due(self, now_s: float) -> bool:
        """True at most once a minute (and once per attempt in flight): record the use."""
        resolution = LAST_USED_RESOLUTION.total_seconds()
        if self.last_used_at is not None and now_s - self.last_used_at <= resolution:
            return False
        if now_s - self.touch_requested_at < 5:
            return False
        self.touch_requested_at = now_s
        return True


api_key_cache: TTLCache[str, KeyGrant] = TTLCache(10_000)  # key hash -> grant
user_cache: TTLCache[str, AuthUser] = TTLCache(10_000)  # user id (from a JWT) -> user

_account = User.__table__  # type: ignore[attr-defined]
_api_key = ApiKey.__table__  # type: ignore[attr-defined]
_USER_COLUMNS = (
    _account.c.id,
    _account.c.email,
    _account.c.created_at,
    _account.c.uploads_per_minute,
    _account.c.max_active_jobs,
    _account.c.bytes_per_day,
)


def _auth_user(row: object) -> AuthUser:
    """From a `User` or a row of `_USER_COLUMNS` (same attribute names)."""
    created = as_utc(row.created_at)  # type: ignore[attr-defined]
    assert created is not None
    return AuthUser(
        id=row.id,  # type: ignore[attr-defined]
        email=row.email,  # type: ignore[attr-defined]
        created_at=created,
        uploads_per_minute=row.uploads_per_minute,  # type: ignore[attr-defined]
        max_active_jobs=row.max_active_jobs,  # type: ignore[attr-defined]
        bytes_per_day=row.bytes_per_day,  # type: ignore[attr-defined]
    )


# Built once: building a statement costs more than running it.
_SELECT_KEY = (
    core_select(*_USER_COLUMNS, _api_key.c.id.label("key_id"), _api_key.c.last_used_at)
    .join_from(_api_key, _account, _api_key.c.user_id == _account.c.id)
    .where(
        _api_key.c.key_hash == bindparam("key_hash"),
        _api_key.c.revoked_at.is_(None),
        _account.c.is_active.is_(True),
    )
)
_SELECT_ACTIVE_USER = core_select(*_USER_COLUMNS).where(
    _account.c.id == bindparam("user_id"), _account.c.is_active.is_(True)
)


def lookup_api_key(*, conn: Connection, key_hash: str) -> KeyGrant:
    """The grant of a valid, unrevoked key of an active user, in one query; AuthError
    otherwise. Reads only: recording the use is `touch_api_key`'s job."""
    row = conn.execute(_SELECT_KEY, {"key_hash": key_hash}).first()
    if row is None:
        raise AuthError("The API key is not valid or has been revoked.")
    last = as_utc(row.last_used_at)
    return KeyGrant(_auth_user(row), row.key_id, last.timestamp() if last else None)


def lookup_active_user(*, conn: Connection, user_id: str) -> AuthUser:
    row = conn.execute(_SELECT_ACTIVE_USER, {"user_id": user_id}).first()
    if row is None:
        raise AuthError("The account is not active.")
    return _auth_user(row)


def touch_api_key(*, engine: Engine, key_id: str, now: datetime) -> bool:
    """Record a key's use, unless another request or process did within the minute."""
    with write_transaction(engine) as conn:
        result = conn.execute(
            update(_api_key)
            .where(
                _api_key.c.id == key_id,
                or_(
                    _api_key.c.last_used_at.is_(None),
                    _api_key.c.last_used_at < now - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=now)
        )
    return bool(result.rowcount)


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
    api_key_cache.discard(record.key_hash)
    return record


def authenticate_api_key(*, session: Session, key: str) -> User:
    """The active user a valid, unrevoked key belongs to; AuthError otherwise."""
    record = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key))).first()
    if record is None or record.revoked_at is not None:
        raise AuthError("The API key is not valid or has been revoked.")
    user = session.get(User, record.user_id)
    if user is None or not user.is_active:
        raise AuthError("The API key is not valid or has been revoked.")
    last = as_utc(record.last_used_at)
    now = utcnow()
    if last is None or now - last > LAST_USED_RESOLUTION:  # one write a minute, not per request
        session.execute(
            update(ApiKey)
            .where(col(ApiKey.id) == record.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return user


def record_login_failure(*, session: Session, email: str) -> None:
    session.add(LoginFailure(email=normalise_email(email)))
    session.commit()


def login_failures_since(
    *, session: Session, email: str, since: datetime
) -> tuple[int, datetime | None]:
    row = session.exec(
        select(func.count(), func.min(LoginFailure.at)).where(
            LoginFailure.email == normalise_email(email), col(LoginFailure.at) > since
        )
    ).one()
    return int(row[0]), as_utc(row[1])


def active_user(*, session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise AuthError("The account is not active.")
    return user


def ensure_dev_user(*, session: Session, settings: Settings) -> User:
    """The local development user of `make run`, with V2M_DEV_API_KEY / V2M_DEV_PASSWORD."""
    user = get_user_by_email(session=session, email=settings.dev_user_email)
    if user is None:
        user = create_user(
            session=session, email=settings.dev_user_email, password=settings.dev_password
        )
    elif settings.dev_password:
        user.password_hash = hash_password(settings.dev_password)
        session.add(user)
        session.commit()
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
