"""The first account's password: production refuses the Secret template's placeholder."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import Settings

REAL = {
    "environment": "production",
    "s3_secret_key": "a-real-secret-key-0123456789",
    "jwt_secret": "a-real-jwt-secret-of-more-than-32-characters",
}


def test_production_refuses_the_placeholder_bootstrap_password() -> None:
    with pytest.raises(ValidationError, match="V2M_BOOTSTRAP_ADMIN_PASSWORD"):
        Settings(**REAL, bootstrap_admin_password="CHANGE-ME-admin-password")  # type: ignore[arg-type]


def test_production_accepts_a_real_bootstrap_password_and_keeps_it_out_of_reprs() -> None:
    settings = Settings(**REAL, bootstrap_admin_password="f3a9c2d4e5b6a7c8")  # type: ignore[arg-type]
    assert settings.bootstrap_admin_password is not None
    assert settings.bootstrap_admin_password.get_secret_value() == "f3a9c2d4e5b6a7c8"
    assert "f3a9c2d4e5b6a7c8" not in repr(settings)
