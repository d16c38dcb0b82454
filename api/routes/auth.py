"""Login with email and password for a short-lived access JWT and a refresh token."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep
from api.errors import error_responses
from shared import limits, users
from shared.config import Settings
from shared.errors import AuthError
from shared.models import LoginRequest, RefreshRequest, TokenPair, User, UserPublic
from shared.security import make_token, read_token, verify_password

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


@router.post(
    "/login", response_model=TokenPair, responses=error_responses(401, 422, 429), summary="Log in"
)
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """Exchange email and password for an access token (Bearer) and a refresh token.

    Too many failed attempts for one email within the window answer 429 until it passes.
    """
    limits.check_login(session=session, email=body.email, settings=settings)
    user = users.get_user_by_email(session=session, email=body.email)
    ok = verify_password(body.password, user.password_hash if user else None)
    if user is None or not ok or not user.is_active:
        users.record_login_failure(session=session, email=body.email)
        raise AuthError("The email or password is not right.")
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
