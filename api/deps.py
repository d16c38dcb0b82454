"""FastAPI dependencies: settings, DB session, storage and publisher from app.state.

The ones that only read app.state are `async def`: FastAPI runs a plain `def` dependency
in the threadpool, a hand-off that costs more than the dependency itself. The hottest
routes read app.state themselves (`engine_of`): each dependency FastAPI solves costs
about as much as a trivial route's whole handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.config import Settings
from shared.queue import Publisher
from shared.storage import Storage


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def engine_of(request: Request) -> Engine:
    """For `async def` routes, which run their database work in a thread themselves."""
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
