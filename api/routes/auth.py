"""Login with email and password for a short-lived access JWT and a refresh token."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import CurrentUser
from api.deps import PasswordHashingDep, SessionDep, SettingsDep
from api.errors import error_responses
from shared import logins, users
from shared.account_schemas import LoginRequest, RefreshRequest, TokenPair, UserPublic
from shared.config import Settings
from shared.errors import AuthError, BusyError
from shared.models import User
from shared.security import make_token, read_token

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def issue(user: User, settings: Settings) -> TokenPair:
    return TokenPair(
        access_token=make_token(
            user_id=user.id,
            kind="access",
            ttl_s=settings.access_token_ttl_s,
            secret=settings.jwt_secret,
        ),
        refresh_token=make_token(
            user_id=user.id,
            kind="refresh",
            ttl_s=settings.refresh_token_ttl_s,
            secret=settings.jwt_secret,
        ),
        expires_in=settings.access_token_ttl_s,
    )


def client_address(request: Request) -> str:
    """The caller's address as uvicorn reports it (behind a proxy, from X-Forwarded-For
    when the proxy is trusted: uvicorn's --forwarded-allow-ips)."""
    return request.client.host[:64] if request.client else "unknown"


@router.post(
    "/login",
    response_model=TokenPair,
    responses=error_responses(401, 413, 422, 429, 503),
    summary="Log in",
)
def login(
    body: LoginRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    hashing: PasswordHashingDep,
) -> TokenPair:
    """Exchange email and password for an access token (Bearer) and a refresh token.

    After repeated failures for one email each try waits a little longer (429 with
    `Retry-After`, at most a minute); too many failures from one address are 429 for a
    while; 503 `server_busy` (with `Retry-After`) when the server is checking too many
    sign-ins at once.
    """
    attempt = logins.record_attempt(
        session=session, email=body.email, client_ip=client_address(request), settings=settings
    )
    user = users.get_user_by_email(session=session, email=body.email)
    try:
        ok = hashing.verify(body.password, user.password_hash if user else None)
    except BusyError:
        logins.forget_attempt(session=session, attempt_id=attempt)  # never judged
        raise
    if user is None or not ok or not user.is_active or user.password_hash is None:
        raise AuthError("The email or password is not right.")  # the attempt stays: a failure
    logins.forget_attempt(session=session, attempt_id=attempt)
    new_hash = hashing.rehash_if_needed(body.password, user.password_hash)
    if new_hash is not None:
        users.set_password_hash(session=session, user=user, password_hash=new_hash)
    return issue(user, settings)


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=error_responses(401, 422),
    summary="Refresh tokens",
)
def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """A new token pair from a valid refresh token."""
    user_id = read_token(body.refresh_token, kind="refresh", secret=settings.jwt_secret)
    return issue(users.active_user(session=session, user_id=user_id), settings)


@router.get("/me", response_model=UserPublic, responses=error_responses(401), summary="Who am I")
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.from_user(user)
