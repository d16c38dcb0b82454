"""Who is calling: `Authorization: Bearer <API key or access JWT>`.

Routes take `CurrentUser`. The two routes a browser opens without being able to set
headers (the events stream and the download redirect, used by EventSource and
<audio src>) also accept the access JWT as an `access_token` query parameter
(`CurrentUserOrQueryToken`); API keys are never accepted in URLs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.deps import SessionDep, SettingsDep
from shared import users
from shared.config import Settings
from shared.errors import AuthError
from shared.models import User
from shared.security import looks_like_api_key, read_token

bearer = HTTPBearer(
    auto_error=False, description="An API key (`v2m_…`) or an access token from /v1/auth/login."
)


def resolve(
    token: str | None, *, session: Session, settings: Settings, allow_api_key: bool = True
) -> User:
    if not token:
        if not settings.auth_required:
            return users.ensure_dev_user(session=session, settings=settings)
        raise AuthError(
            "Authentication is required: send an API key or a token as 'Authorization: Bearer …'."
        )
    if looks_like_api_key(token):
        if not allow_api_key:
            raise AuthError("API keys cannot be sent in URLs; use the Authorization header.")
        return users.authenticate_api_key(session=session, key=token)
    user_id = read_token(token, kind="access", secret=settings.jwt_secret)
    return users.active_user(session=session, user_id=user_id)


def current_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    return resolve(
        credentials.credentials if credentials else None, session=session, settings=settings
    )


def current_user_or_query_token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    access_token: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="An access JWT, for clients that cannot set headers (EventSource, <audio>).",
        ),
    ] = None,
) -> User:
    if credentials is not None:
        return resolve(credentials.credentials, session=session, settings=settings)
    return resolve(access_token, session=session, settings=settings, allow_api_key=False)


CurrentUser = Annotated[User, Depends(current_user)]
CurrentUserOrQueryToken = Annotated[User, Depends(current_user_or_query_token)]
