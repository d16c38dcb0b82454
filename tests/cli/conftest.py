"""v2m's tests: unit tests against an in-memory API (tests/cli/fake_api.py) and runs of
the installed `v2m` command against the integration suite's real stack."""

from collections.abc import Iterator
from pathlib import Path

import pytest

# The integration suite's fixtures, reused rather than copied: RabbitMQ, the S3 server,
# ffmpeg, generated media, `make_stack(**settings)` and the module-scoped stack (API + a worker).
from tests.integration.conftest import (  # noqa: F401
    amqp_url,
    ffmpeg_available,
    make_stack,
    media_dir,
    s3_endpoint,
    shared_stack,
)


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """v2m's config directory inside the test's temp dir (never the user's)."""
    home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in ("V2M_API_URL", "V2M_API_KEY", "V2M_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    yield home
