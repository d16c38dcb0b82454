"""FastAPI dependencies: settings, engine, DB session, storage, publisher, password hashing.

The adapters are built once by the lifespan and kept on app.state; routes reach them only
through these dependencies, so `app.dependency_overrides` replaces them everywhere. The
ones that only read app.state are `async def` (nothing in them blocks).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.hashing import PasswordHashing
from shared.config import Settings
from shared.queue import Publisher
from shared.storage import Storage


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


async def get_password_hashing(request: Request) -> PasswordHashing:
    hashing: PasswordHashing = request.app.state.password_hashing
    return hashing


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
# Closed when the endpoint returns, before the response is sent: a streamed response
# (the events route) holds no database connection while it streams.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StorageDep = Annotated[Storage, Depends(get_storage)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
PasswordHashingDep = Annotated[PasswordHashing, Depends(get_password_hashing)]
