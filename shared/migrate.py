"""`python -m shared.migrate`: the start-up set-up, then exit.

``prepare`` is the one place that readies what every process needs before it serves: the
database schema at the newest migration and, when ``s3_create_bucket`` is on, the bucket
with its CORS rule (``Storage.ensure_bucket``). The API runs it in its lifespan. The
worker runs this module as a child process and waits for it, so that Alembic, the
migration scripts and boto3 never live in the worker's own memory; after ``prepare`` it
creates the deployment's first account when settings name one (shared/bootstrap.py).
All of it is safe to run from many processes at once. Exit status 0 when done, 1 (with
the error logged) otherwise.
"""

from __future__ import annotations

import sys

import structlog
from sqlalchemy.engine import Engine

from shared.bootstrap import ensure_bootstrap_admin
from shared.config import Settings, get_settings
from shared.db import make_engine, migrate
from shared.errors import StorageError
from shared.logging import configure_logging
from shared.storage import Storage


def prepare(settings: Settings, engine: Engine) -> None:
    """Schema to head, then the bucket (created if missing, CORS set) when enabled."""
    migrate(engine)
    if settings.s3_create_bucket:
        Storage(settings).ensure_bucket()


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger("migrate")
    engine = make_engine(settings)
    try:
        prepare(settings, engine)
        ensure_bootstrap_admin(engine, settings)
    except StorageError as exc:
        log.error(
            "bucket_setup_failed",
            bucket=settings.s3_bucket,
            error=exc.message,
            cause=str(exc.__cause__),
        )
        return 1
    except Exception:
        log.error("migration_failed", exc_info=True)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
