"""What every job of a worker shares: settings, the database engine, storage, the stop flag."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from shared.config import Settings
from shared.queue import Publisher
from shared.storage import Storage


@dataclass
class JobContext:
    settings: Settings
    engine: Engine
    storage: Storage
    # Publishes job events once an outcome is stored (None: no notifications).
    events: Publisher | None = None
    # Set when the worker stops: a message delivered after that is given back unstarted.
    stopping: threading.Event = field(default_factory=threading.Event)
