"""`python -m notifier`: consume job events, deliver webhooks and email."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import structlog
from prometheus_client import start_http_server

from notifier import metrics
from notifier.consumer import EventConsumer
from notifier.sender import Sender
from shared.config import get_settings
from shared.db import make_engine, migrate
from shared.logging import configure_logging


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger("notifier")
    engine = make_engine(settings)
    migrate(engine)
    metrics.initialise()
    if settings.notifier_metrics_port:
        start_http_server(settings.notifier_metrics_port)
    sender = Sender(settings, engine)
    consumer = EventConsumer(settings, engine, on_recorded=sender.wake.set)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        consumer.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sender.start()
    log.info("notifier_started", queue=settings.notify_queue_name)
    consumer.run()
    sender.stop()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
