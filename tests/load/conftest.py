"""The Locust smoke run reuses the integration suite's fixtures: RabbitMQ, moto's S3
server, ffmpeg and ``make_stack(**settings)``."""

from tests.integration.conftest import (  # noqa: F401
    amqp_url,
    ffmpeg_available,
    make_stack,
    s3_endpoint,
)
