"""Fixtures for the monitoring tests: Debian's prometheus/promtool binaries, and the real
services of tests/integration (RabbitMQ, S3 server, ffmpeg) for the live test.

A missing binary fails the run with how to install it; it is never skipped.
"""

from __future__ import annotations

import shutil

import pytest

from tests.integration.conftest import (  # noqa: F401  (fixtures for test_live_prometheus)
    amqp_url,
    ffmpeg_available,
    media_dir,
    port_open,
    s3_endpoint,
    sample,
)

INSTALL_HINT = (
    "is not installed: run `make install-test-tools` (or `scripts/bootstrap.sh test-tools`), "
    "which runs `apt-get install --no-install-recommends prometheus` (Debian's package; "
    "it also brings promtool)"
)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _binary("prometheus")


@pytest.fixture(scope="session")
def rabbitmq_metrics_port() -> int:
    """RabbitMQ's rabbitmq_prometheus endpoint on the local broker."""
    if not port_open(15692):
        pytest.fail(
            "RabbitMQ's Prometheus endpoint (127.0.0.1:15692) is not answering: run "
            "`make install-system` (it runs `rabbitmq-plugins enable rabbitmq_prometheus`)"
        )
    return 15692
