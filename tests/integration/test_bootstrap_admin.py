"""The deployment's first account: `python -m shared.migrate` creates it once from settings.

Runs the start-up migration step as the worker runs it (a child process), against a
fresh SQLite file and a fresh PostgreSQL database, then signs the account's password
against what was stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, create_engine, select

from shared.models import User
from shared.security import verify_password

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EMAIL = "admin@example.test"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bootstrap.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def run_module(database_url: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("V2M_")}
    # The database steps alone: no S3 server here for the step's bucket set-up.
    base["V2M_S3_CREATE_BUCKET"] = "false"
    return subprocess.run(
        [sys.executable, "-m", *argv],
        env={**base, "V2M_DATABASE_URL": database_url, "V2M_LOG_FORMAT": "json", **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored_users(database_url: str) -> list[User]:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(User)).all())
    finally:
        engine.dispose()


def test_start_up_creates_the_bootstrap_admin_once(database_url: str) -> None:
    # Given settings that name a first account
    settings = {
        "V2M_BOOTSTRAP_ADMIN_EMAIL": EMAIL,
        "V2M_BOOTSTRAP_ADMIN_PASSWORD": "first-password-1",
    }
    # When the start-up migration step runs on an empty database
    first = run_module(database_url, "shared.migrate", **settings)
    # Then the account exists and signs in with that password
    assert first.returncode == 0, first.stdout + first.stderr
    assert "bootstrap_admin_created" in first.stdout
    [user] = stored_users(database_url)
    assert user.email == EMAIL
    assert verify_password("first-password-1", user.password_hash)

    # When it runs again (a restart, another worker) with another password
    again = run_module(
        database_url,
        "shared.migrate",
        V2M_BOOTSTRAP_ADMIN_EMAIL=EMAIL,
        V2M_BOOTSTRAP_ADMIN_PASSWORD="another-password-2",
    )
    # Then nothing changes: still one account, still the first password
    assert again.returncode == 0, again.stdout + again.stderr
    assert "bootstrap_admin_created" not in again.stdout
    [same] = stored_users(database_url)
    assert same.id == user.id
    assert verify_password("first-password-1", same.password_hash)

    # And the admin CLI the deployment docs name sees it
    listed = run_module(database_url, "api.admin", "list-users")
    assert listed.returncode == 0, listed.stderr
    assert EMAIL in listed.stdout


def test_start_up_without_bootstrap_settings_creates_no_account(database_url: str) -> None:
    result = run_module(database_url, "shared.migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_users(database_url) == []


def test_a_too_short_bootstrap_password_fails_start_up_with_a_clear_message(
    database_url: str,
) -> None:
    result = run_module(
        database_url,
        "shared.migrate",
        V2M_BOOTSTRAP_ADMIN_EMAIL=EMAIL,
        V2M_BOOTSTRAP_ADMIN_PASSWORD="short",
    )
    assert result.returncode == 1
    assert "at least 8 characters" in result.stdout + result.stderr
    assert stored_users(database_url) == []
