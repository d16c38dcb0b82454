"""structlog set up once: JSON lines on stdout, readable console output on a TTY."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if use_console:
        colors = sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR"))
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
        processors: list[structlog.typing.Processor] = [*shared_processors, renderer]
    else:
        renderer = structlog.processors.JSONRenderer()
        processors = [*shared_processors, structlog.processors.dict_tracebacks, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library; keep them quiet and on the same stream.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s"
    )
    for noisy in ("botocore", "urllib3", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika logs every failed connection attempt with a traceback; we log our own one-line
    # events (broker_connection_lost, request_failed) where the failure is handled.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
