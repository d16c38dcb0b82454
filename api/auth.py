"""Who is calling: `Authorization: Bearer <API key or access JWT>`.

Routes take `CurrentUser`. The two routes a browser opens without being able to set
headers (the events stream and the download redirect, used by EventSource and
<audio src>) also accept the access JWT as an `access_token` query parameter
(`CurrentUserOrQueryToken`); API keys are never accepted in URLs. Both read the
credential's user from the database on every request, so a revoked key or a deactivated
account is refused at once. With `auth_required` off, a request without a credential
acts as the local development user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.deps import SessionDep, SettingsDep
from shared import users
from shared.config import Settings
from shared.errors import AuthError
from shared.models import User
from shared.security import looks_like_api_key, read_token

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="An API key (`v2m_…`) or an access token from /v1/auth/login.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _user_of(
    token: str | None, session: SessionDep, settings: SettingsDep, *, allow_api_key: bool = True
) -> User:
    if not token:
        if not settings.auth_required:  # the local user (its password is set at start-up)
            return users.get_or_create_user(session=session, email=settings.dev_user_email)
        raise AuthError(
            "Authentication is required: send an API key or a token as 'Authorization: Bearer …'."
        )
    if looks_like_api_key(token):
        if not allow_api_key:
            raise AuthError("API keys cannot be sent in URLs; use the Authorization header.")
        return users.authenticate_api_key(session=session, key=token)
    user_id = read_token(token, kind="access", secret=settings.jwt_secret)
    return users.active_user(session=session, user_id=user_id)


def get_current_user(
    credentials: BearerCredentials, session: SessionDep, settings: SettingsDep
) -> User:
    """The user an `Authorization: Bearer` header names."""
    return _user_of(credentials.credentials if credentials else None, session, settings)


@dataclass(frozen=True)
class Caller:
    """Who is calling and with what, for a response that outlives one check (the events
    stream checks the same credential again while it runs)."""

    user: User
    token: str | None  # None: the local user of an unauthenticated laptop
    in_url: bool

    def recheck(self, session: Session, settings: Settings) -> User:
        """The credential's user again; AuthError once it has expired or been revoked."""
        return _user_of(self.token, session, settings, allow_api_key=not self.in_url)


def get_caller_or_query_token(
    credentials: BearerCredentials,
    session: SessionDep,
    settings: SettingsDep,
    access_token: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="An access JWT, for clients that cannot set headers (EventSource, <audio>).",
        ),
    ] = None,
) -> Caller:
    """The header's credential, else an `access_token` query parameter (never an API key)."""
    token, in_url = (credentials.credentials, False) if credentials else (access_token, True)
    return Caller(_user_of(token, session, settings, allow_api_key=not in_url), token, in_url)


def get_current_user_or_query_token(
    caller: Annotated[Caller, Depends(get_caller_or_query_token)],
) -> User:
    """The user the header names, else the one an `access_token` query parameter names."""
    return caller.user


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentUserOrQueryToken = Annotated[User, Depends(get_current_user_or_query_token)]
CallerOrQueryToken = Annotated[Caller, Depends(get_caller_or_query_token)]
