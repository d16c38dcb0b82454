"""Alembic environment: the engine comes from the caller (shared.db.migrate) or settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from shared import models  # noqa: F401  (registers the tables)
from shared.config import get_settings
from shared.db import make_engine

target_metadata = SQLModel.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:  # the `alembic` command line
    engine = make_engine(get_settings())
    with engine.connect() as conn:
        run(conn)
