"""The docs' and scripts' live runs reuse the integration suite's fixtures: RabbitMQ, the
S3 server, ffmpeg and ``make_stack(**settings)``."""

from tests.integration.conftest import (  # noqa: F401
    amqp_url,
    ffmpeg_available,
    make_stack,
    s3_endpoint,
)
