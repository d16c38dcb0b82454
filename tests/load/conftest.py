"""The Locust smoke run reuses the integration suite's fixtures: RabbitMQ, the S3 server
(`rclone serve s3` over a temp dir), ffmpeg and ``make_stack(**settings)``."""

from tests.integration.conftest import (  # noqa: F401
    amqp_url,
    ffmpeg_available,
    make_stack,
    s3_endpoint,
)
