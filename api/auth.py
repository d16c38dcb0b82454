"""Who is calling: `Authorization: Bearer <API key or access JWT>`.

Routes take `CurrentUser`. The two routes a browser opens without being able to set
headers (the events stream and the download redirect, used by EventSource and
<audio src>) also accept the access JWT as an `access_token` query parameter
(`CurrentUserOrQueryToken`); API keys are never accepted in URLs.

Resolving runs on the event loop: a credential seen within `auth_cache_ttl_s` is
answered from memory (shared/users.py), and only a miss reads the database, in a thread.
A key's use is recorded at most once a minute, after the response is sent. Each is one
dependency, an HTTPBearer (so OpenAPI documents the scheme) that returns the user;
GET /v1/jobs/{id} and POST /v1/uploads call `authenticate()` themselves instead (see there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import BackgroundTasks, Depends, Query, Request
from fastapi.security import HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import engine_of
from shared import users
from shared.config import Settings
from shared.errors import AuthError
from shared.models import utcnow
from shared.security import hash_api_key, looks_like_api_key, read_token
from shared.users import AuthUser, KeyGrant, TTLCache

V = TypeVar("V")

DESCRIPTION = "An API key (`v2m_…`) or an access token from /v1/auth/login."


async def resolve(
    token: str | None,
    *,
    engine: Engine,
    settings: Settings,
    background: BackgroundTasks,
    allow_api_key: bool = True,
) -> AuthUser:
    if not token:
        if not settings.auth_required:
            return await run_in_threadpool(_dev_user, engine, settings)
        raise AuthError(
            "Authentication is required: send an API key or a token as 'Authorization: Bearer …'."
        )
    if looks_like_api_key(token):
        if not allow_api_key:
            raise AuthError("API keys cannot be sent in URLs; use the Authorization header.")
        grant = await _api_key_grant(hash_api_key(token), engine, settings)
        if grant.touch_due(time.time()):
            background.add_task(_touch, engine, grant)
        return grant.user
    user_id = read_token(token, kind="access", secret=settings.jwt_secret)
    return await _cached(users.user_cache, user_id, settings, _active_user, engine)


async def _api_key_grant(key_hash: str, engine: Engine, settings: Settings) -> KeyGrant:
    return await _cached(users.api_key_cache, key_hash, settings, _lookup_key, engine)


async def _cached(
    cache: TTLCache[str, V],
    key: str,
    settings: Settings,
    load: Callable[[Engine, str], V],
    engine: Engine,
) -> V:
    """From this process's cache, else loaded in a thread (and cached unless TTL is 0)."""
    ttl = settings.auth_cache_ttl_s
    value = cache.get(key, ttl)
    if value is None:
        generation = cache.generation
        value = await run_in_threadpool(load, engine, key)
        if ttl > 0:
            cache.put(key, value, generation=generation)
    return value


def _lookup_key(engine: Engine, key_hash: str) -> KeyGrant:
    with engine.connect() as conn:
        return users.lookup_api_key(conn=conn, key_hash=key_hash)


def _active_user(engine: Engine, user_id: str) -> AuthUser:
    with engine.connect() as conn:
        return users.lookup_active_user(conn=conn, user_id=user_id)


def _dev_user(engine: Engine, settings: Settings) -> AuthUser:
    with Session(engine, expire_on_commit=False) as session:
        return AuthUser.of(users.ensure_dev_user(session=session, settings=settings))


def _touch(engine: Engine, grant: KeyGrant) -> None:
    now = utcnow()
    users.touch_api_key(engine=engine, key_id=grant.key_id, now=now)
    grant.last_used_at = now.timestamp()


class BearerUser(HTTPBearer):
    """The user an `Authorization: Bearer` header names."""

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=DESCRIPTION)

    async def __call__(  # type: ignore[override]
        self, request: Request, background: BackgroundTasks
    ) -> AuthUser:
        return await self.user_of(request, background)

    async def user_of(self, request: Request, background: BackgroundTasks) -> AuthUser:
        credentials = await super().__call__(request)
        return await resolve(
            credentials.credentials if credentials else None,
            engine=engine_of(request),
            settings=request.app.state.settings,
            background=background,
        )


class BearerOrQueryTokenUser(HTTPBearer):
    """The user the header names, else the one an `access_token` query parameter names."""

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=DESCRIPTION)

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        background: BackgroundTasks,
        access_token: Annotated[
            str | None,
            Query(
                max_length=4096,
                description="An access JWT, for clients that cannot set headers (EventSource, <audio>).",
            ),
        ] = None,
    ) -> AuthUser:
        credentials = await super().__call__(request)
        engine, settings = engine_of(request), request.app.state.settings
        if credentials is not None:
            return await resolve(
                credentials.credentials, engine=engine, settings=settings, background=background
            )
        return await resolve(
            access_token,
            engine=engine,
            settings=settings,
            background=background,
            allow_api_key=False,
        )


current_user = BearerUser()
current_user_or_query_token = BearerOrQueryTokenUser()

# OpenAPI's security requirement of a route that authenticates with `authenticate()`:
# the same as FastAPI writes for a route that depends on `CurrentUser`.
BEARER_REQUIRED: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


async def authenticate(request: Request, background: BackgroundTasks) -> AuthUser:
    """`CurrentUser` for the hottest routes (a job's status, polled; an upload's URL),
    called by the route itself: FastAPI's solving of a sub-dependency costs more than
    resolving a cached key (about 15 µs a request). Such a route is documented as
    depending on `CurrentUser` (`openapi_extra=BEARER_REQUIRED`, or a declared endpoint
    served by its own handler: api/served.py), calls this before it reads anything else
    of the request, so that a missing credential is 401 whatever the rest says, and
    returns its response with ``background`` attached (a key's use is recorded after
    the response, as with the dependency)."""
    return await current_user.user_of(request, background)


CurrentUser = Annotated[AuthUser, Depends(current_user)]
CurrentUserOrQueryToken = Annotated[AuthUser, Depends(current_user_or_query_token)]
