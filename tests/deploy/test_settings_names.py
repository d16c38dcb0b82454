"""Every V2M_* variable a deployment file sets is one the settings object reads.

A misspelt or renamed variable is otherwise silently ignored (pydantic-settings ignores
unknown environment variables), and the deployment runs on defaults.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FILES = [
    "docker-compose.yaml",
    "docker-compose.locust.yml",
    ".env.example",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "k8s").rglob("*") if p.is_file()),
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.sh")),
]
NAME = re.compile(r"\bV2M_[A-Z0-9_]+\b")
KNOWN = {f"V2M_{name.upper()}" for name in Settings.model_fields}
# Read by something other than Settings (documented where used).
OTHER_READERS = {
    "V2M_API_KEY",
    "V2M_DEMO_URL",
    "V2M_UPDATE_SCREENSHOTS",
    "V2M_TEST_AMQP_URL",
    "V2M_TEST_POSTGRES_URL",
    "V2M_TEST_S3_ENDPOINT",
}


@pytest.mark.parametrize("relative", FILES)
def test_deployment_file_sets_only_known_settings(relative: str) -> None:
    path = ROOT / relative
    if not path.exists():
        pytest.fail(f"{relative} is missing")
    names = set(NAME.findall(path.read_text(errors="replace")))
    unknown = sorted(names - KNOWN - OTHER_READERS)
    assert not unknown, f"{relative} sets variables no setting reads: {unknown}"
