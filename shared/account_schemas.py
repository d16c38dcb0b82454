"""The v1 API's account schemas: sign-in, the account's notification defaults and
webhook deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from shared.models import Delivery, DeliveryStatus, User, as_utc
from shared.schemas import Text

# --------------------------------------------------------------------------- auth schemas


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "ada@example.com", "password": "correct horse battery"}]
        },
    )

    email: Text = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class UserPublic(BaseModel):
    id: str
    email: str
    created_at: datetime

    @classmethod
    def from_user(cls, user: User) -> UserPublic:
        created = as_utc(user.created_at)
        assert created is not None
        return cls(id=user.id, email=user.email, created_at=created)


# --------------------------------------------------------------------------- notification schemas


class AccountPublic(BaseModel):
    id: str
    email: str
    webhook_url: str | None = Field(description="Default webhook for jobs created without one.")
    notify_email: bool = Field(description="Email by default when a job finishes.")


class AccountUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"webhook_url": "https://example.com/hooks", "notify_email": True}]
        },
    )

    webhook_url: str | None = Field(default=None, max_length=2048)
    notify_email: bool | None = None


class WebhookSecret(BaseModel):
    secret: str = Field(description="`whsec_<base64>`: the key webhook signatures are made with.")


class DeliveryPublic(BaseModel):
    id: str = Field(
        description="The attempt's id; POST …/deliveries/{id}/retry re-sends its event."
    )
    event_id: str = Field(description="The `webhook-id`: the same on every attempt of an event.")
    event_type: str
    channel: Literal["webhook", "email"]
    attempt: int
    status: DeliveryStatus
    created_at: datetime
    attempted_at: datetime | None
    url_host: str | None = Field(description="The webhook's host (None for email).")
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    error: str | None
    next_retry_at: datetime | None

    @classmethod
    def from_delivery(cls, row: Delivery) -> DeliveryPublic:
        created = as_utc(row.created_at)
        assert created is not None
        return cls(
            id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            channel="email" if row.channel == "email" else "webhook",
            attempt=row.attempt,
            status=DeliveryStatus(row.status),
            created_at=created,
            attempted_at=as_utc(row.finished_at or row.claimed_at),
            url_host=urlsplit(row.target).hostname if row.channel == "webhook" else None,
            status_code=row.status_code,
            error=row.error,
            next_retry_at=as_utc(row.next_retry_at),
        )


class DeliveriesPublic(BaseModel):
    items: list[DeliveryPublic]
