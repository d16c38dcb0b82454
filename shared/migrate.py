"""`python -m shared.migrate`: bring the database schema to the newest migration, then exit.

The worker runs this as a child process at start-up and waits for it, so that Alembic
(and the migration scripts) never live in the worker's own memory: the worker process
stays small for as long as it runs (docs/PERFORMANCE.md, issue 8). After the schema, it
creates the deployment's first account when settings name one (shared/bootstrap.py).
Exit status 0 when the schema is at head (and that account exists if asked for), 1 (with
the error logged) otherwise.
"""

from __future__ import annotations

import sys

import structlog

from shared.bootstrap import ensure_bootstrap_admin
from shared.config import get_settings
from shared.db import make_engine, migrate
from shared.logging import configure_logging


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger("migrate")
    engine = make_engine(settings)
    try:
        migrate(engine)
        ensure_bootstrap_admin(engine, settings)
    except Exception:
        log.error("migration_failed", exc_info=True)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
