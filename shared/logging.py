"""structlog set up once: JSON lines on stdout, readable console output on a TTY."""

from __future__ import annotations

import logging
import os
import re
import sys

import structlog

_QUERY_TOKEN = re.compile(r"(?<=[?&]access_token=)[^&\s]+")


class RedactQueryTokens(logging.Filter):
    """uvicorn's access lines with the value of a URL's `access_token` redacted: the two
    routes a browser opens without headers take an access JWT there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _QUERY_TOKEN.sub("[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks without the frames' local variables, as data (JSON) or drawn by rich
    # (console): locals can hold a password, a key or a presigned URL.
    tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    renderer: structlog.typing.Processor
    if use_console:
        colors = sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR"))
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors,
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
        processors: list[structlog.typing.Processor] = [*shared_processors, renderer]
    else:
        renderer = structlog.processors.JSONRenderer()
        processors = [*shared_processors, tracebacks, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries and uvicorn log through the standard library: the same renderer, the same
    # stream, so a log collector reads one format. uvicorn's handlers are swapped for
    # this one where it has set any (a logger it silenced, as --no-access-log does, stays
    # silent); what it printed before the app was loaded stays as it was.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *shared_processors,
                *([] if use_console else [tracebacks]),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        if uvicorn_logger.handlers:
            uvicorn_logger.handlers = [handler]
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryTokens) for f in access.filters):
        access.addFilter(RedactQueryTokens())
    for noisy in ("botocore", "urllib3", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika logs every failed connection attempt with a traceback; we log our own one-line
    # events (broker_connection_lost, request_failed) where the failure is handled.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
