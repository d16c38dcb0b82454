"""Settings that would open a hole are refused at start, with a sentence saying what to set."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import make_settings

PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "s3_secret_key": "a-real-secret-value",
    "jwt_secret": "x" * 40,
    "auth_required": True,
    "cors_origins": ["https://video2mp3.example.com"],
}


@pytest.mark.parametrize(
    "key",
    [
        "my-own-dev-key-without-the-prefix-0123456789",  # can never be told from a JWT
        "v2m_short",  # guessable
    ],
)
def test_a_dev_api_key_that_could_never_authenticate_is_refused_at_start(key: str) -> None:
    with pytest.raises(ValueError, match="V2M_DEV_API_KEY must start with 'v2m_'"):
        make_settings(dev_api_key=key)


def test_a_well_formed_dev_api_key_is_accepted() -> None:
    key = "v2m_" + "k" * 32
    assert make_settings(dev_api_key=key).dev_api_key == key


@pytest.mark.parametrize(
    "dev", [{"dev_api_key": "v2m_" + "k" * 40}, {"dev_password": "local-password"}]
)
def test_production_refuses_dev_credentials(dev: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="V2M_DEV_API_KEY and V2M_DEV_PASSWORD"):
        make_settings(**PRODUCTION, **dev)


@pytest.mark.parametrize(
    ("field", "name"),
    [("cors_origins", "V2M_CORS_ORIGINS"), ("s3_cors_origins", "V2M_S3_CORS_ORIGINS")],
)
def test_production_refuses_a_wildcard_cors_origin(field: str, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} cannot contain"):
        make_settings(**{**PRODUCTION, field: ["*"]})


def test_the_bucket_cors_follows_the_page_origin_and_is_open_only_outside_production() -> None:
    assert make_settings(**PRODUCTION).s3_cors_origins == ["https://video2mp3.example.com"]
    assert make_settings(**{**PRODUCTION, "cors_origins": []}).s3_cors_origins == []
    assert make_settings().s3_cors_origins == ["*"]
    assert make_settings(s3_cors_origins=["http://a.test"]).s3_cors_origins == ["http://a.test"]
