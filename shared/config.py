"""The one settings object, read from `V2M_*` environment variables (and `.env`).

API and worker share it so that a deployment configures both with one ConfigMap.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024**2
GiB = 1024**3
API_KEY_PREFIX = "v2m_"
DEV_API_KEY_MIN_SECRET = 32
_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "minioadmin", "testing"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="V2M_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Database: SQLite by default, PostgreSQL in Compose/Kubernetes.
    database_url: str = "sqlite:///./video2mp3.db"

    # RabbitMQ
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    queue_name: str = "transcode"
    publish_timeout_s: float = 5.0

    # Object storage (S3 / MinIO). The API and worker reach `s3_endpoint_url`;
    # browsers reach `s3_public_endpoint_url`, which presigned URLs are signed for.
    s3_endpoint_url: str | None = "http://127.0.0.1:9000"
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "video2mp3"
    s3_access_key: str = "testing"
    s3_secret_key: str = "testing"
    s3_region: str = "us-east-1"
    s3_create_bucket: bool = True
    # Origins the bucket's CORS lets PUT and GET (the page's). Unset, it follows
    # `cors_origins`, else `*` outside production; production refuses `*`.
    s3_cors_origins: list[str] = Field(default_factory=list)

    # Limits
    max_upload_bytes: int = 50 * GiB
    upload_url_expires_s: int = 3600
    # Multipart uploads (S3's 5 MiB part minimum bounds both sizes): files at or above
    # the threshold go up in parts of at least `multipart_part_size_bytes`; each part's
    # URL lives `multipart_part_url_expires_s`, and an upload left unfinished
    # `multipart_expires_s` after it began is aborted by the reaper.
    multipart_threshold_bytes: int = Field(default=64 * MiB, ge=5 * MiB)
    multipart_part_size_bytes: int = Field(default=16 * MiB, ge=5 * MiB)
    multipart_part_url_expires_s: int = Field(default=900, gt=0)
    multipart_expires_s: int = Field(default=24 * 3600, gt=0)
    download_url_expires_s: int = 3600
    input_url_expires_s: int = 6 * 3600
    # Retention: an MP3 stays downloadable this long after its job completed (a bucket
    # lifecycle rule where the server has them, the reaper everywhere); an input is
    # removed once its job is finished. Fractions of a day are for tests.
    output_retention_days: float = Field(default=7.0, gt=0)

    # Accounts and access. With auth_required off, requests without credentials act as
    # the local development user (a single-user laptop); with it on (the default, and
    # always in Compose/Kubernetes) every /v1 route needs an API key or a JWT.
    auth_required: bool = True
    jwt_secret: str = "dev-only-insecure-jwt-secret-change-me-please"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 7 * 24 * 3600
    dev_user_email: str = "dev@localhost"
    # `make run`'s local user (never in production): an API key of the `v2m_` form
    # with at least DEV_API_KEY_MIN_SECRET characters after the prefix, and a password.
    dev_api_key: str | None = None
    dev_password: str | None = None
    # The first account of a deployment: created at start-up (shared/bootstrap.py) when
    # both are set and no account has this email; never changed afterwards.
    bootstrap_admin_email: str | None = None
    bootstrap_admin_password: SecretStr | None = None
    # Default per-user limits (a user row may override each).
    # Failed sign-ins: past `login_failures_allowed` failures for one email within the
    # window, each further try waits `login_backoff_base_s` doubled per failure, at most
    # `login_backoff_max_s`; one client address gets `login_failures_per_ip` failures per
    # window. A process hashes at most `login_hash_concurrency` passwords at once and a
    # login waits up to `login_hash_wait_s` for a turn, else 503 (docs/SECURITY.md).
    login_failures_allowed: int = Field(default=5, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)
    login_backoff_base_s: float = Field(default=2.0, gt=0)
    login_backoff_max_s: float = Field(default=60.0, gt=0)
    login_failures_per_ip: int = Field(default=100, ge=1)
    login_hash_concurrency: int = Field(default=2, ge=1, le=64)
    login_hash_wait_s: float = Field(default=2.0, ge=0)
    uploads_per_minute: int = 60
    max_active_jobs: int = 20
    bytes_per_day: int = 200 * GiB

    # API
    cors_origins: list[str] = Field(default_factory=list)
    frontend_dir: str = "frontend"
    # The events stream reads its job every poll interval, re-checks its credential
    # every recheck interval (a revoked key or an expired token ends it), and a user may
    # hold `events_streams_per_user` streams at once per API process.
    events_poll_interval_s: float = Field(default=1.0, gt=0)
    events_credential_recheck_s: float = Field(default=30.0, ge=0)
    events_streams_per_user: int = Field(default=5, ge=1)
    # The largest request body the API reads (JSON bodies are small; files go to storage).
    max_request_body_bytes: int = Field(default=64 * 1024, ge=1024)

    # Worker
    worker_concurrency: int = Field(default=1, ge=1, le=64)
    worker_drain_timeout_s: float = 1560.0
    worker_metrics_port: int = 9100
    # Liveness (/healthz on the metrics port) fails when the worker's main loop has not
    # turned for this long; a broker outage does not stop it turning.
    worker_stall_timeout_s: float = Field(default=120.0, gt=0)
    # Below RabbitMQ's default consumer_timeout (30 min); raise both together (docs/ARCHITECTURE.md).
    job_timeout_s: float = 1500.0
    max_attempts: int = Field(default=3, ge=1, description="Attempts for transient failures.")
    retry_backoff_base_s: float = 2.0
    retry_backoff_max_s: float = 300.0
    progress_interval_s: float = 1.0
    # Leases: a running job renews its lease; one not renewed for job_lease_s is put back.
    heartbeat_interval_s: float = 10.0
    job_lease_s: float = 60.0
    reaper_interval_s: float = 30.0
    unpublished_after_s: float = 60.0
    # A queued job published this long ago and never claimed has lost its message (e.g.
    # dead-lettered during a database outage): the reaper publishes it again.
    unclaimed_after_s: float = Field(default=900.0, gt=0)
    # Split jobs (docs/ARCHITECTURE.md "Split jobs"): an MP3 job on an input longer than
    # split_min_duration_s is encoded in ranges of about split_segment_s by any free
    # workers at once, then joined; 0 turns splitting off.
    split_min_duration_s: float = Field(default=300.0, ge=0)
    split_segment_s: float = Field(default=120.0, gt=0)
    # Hostile or oversized input
    max_media_duration_s: float = 4 * 3600.0
    max_output_bytes: int = 1 * GiB
    # ffmpeg's address-space limit (RLIMIT_AS), per conversion. Set it below the worker
    # container's memory limit, less the worker's own memory, divided by its concurrency:
    # then ffmpeg fails its allocation (`resource_limit`, once) before the OOM killer takes
    # the container. ffmpeg needs a few hundred MB of address space just to start.
    ffmpeg_memory_limit_mb: int = Field(default=2048, ge=0)
    tmp_dir: str | None = None
    ffmpeg_bin: str = "ffmpeg"
    ffprobe_bin: str = "ffprobe"
    # The API's probe of an upload (GET /v1/uploads/{id}/probe and /cover): its wall-clock
    # limit, how many run at once per API process (more answer 503), and the largest
    # cover picture it returns. It runs under ffmpeg_memory_limit_mb too.
    probe_timeout_s: float = Field(default=20.0, gt=0)
    probe_concurrency: int = Field(default=2, ge=1, le=64)
    cover_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    # Notifications (notifier/, docs/ARCHITECTURE.md "Notifications")
    events_exchange: str = "video2mp3.events"
    notify_queue_name: str = "notify"
    # The page's address: emails link to the job's view there.
    public_url: str = "http://127.0.0.1:8000"
    notify_max_attempts: int = Field(default=8, ge=1)
    # Delay before attempt n+1: base * factor**(n-1), at most max (8 attempts: about 23 h).
    notify_backoff_base_s: float = Field(default=30.0, gt=0)
    notify_backoff_factor: float = Field(default=4.0, ge=1)
    notify_backoff_max_s: float = Field(default=12 * 3600.0, gt=0)
    # How often the notifier looks for due deliveries when nothing wakes it.
    notify_poll_interval_s: float = Field(default=5.0, gt=0)
    # A delivery claimed this long ago and not recorded (its notifier died) is sent again.
    notify_claim_timeout_s: float = Field(default=120.0, gt=0)
    # Jobs finished more than grace and less than window seconds ago whose event never
    # arrived (the worker could not publish it) are found every sweep interval.
    notify_sweep_interval_s: float = Field(default=60.0, gt=0)
    notify_sweep_grace_s: float = Field(default=60.0, ge=0)
    notify_sweep_window_s: float = Field(default=6 * 3600.0, gt=0)
    notifier_metrics_port: int = 9101
    notifier_prefetch: int = Field(default=10, ge=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Development only: lets webhooks reach loopback and private addresses.
    webhook_allow_private_targets: bool = False
    # The previous secret keeps signing beside a rotated one for this long.
    webhook_secret_overlap_s: float = 24 * 3600.0
    # smtp://user:pass@host:587 (STARTTLS), smtps://…:465 (TLS), smtp://host:25?starttls=false
    smtp_url: SecretStr | None = None
    mail_from: str = "video2mp3 <noreply@localhost>"
    smtp_timeout_s: float = Field(default=15.0, gt=0)

    @property
    def public_endpoint(self) -> str | None:
        return self.s3_public_endpoint_url or self.s3_endpoint_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _check_dev_api_key(self) -> Settings:
        key = self.dev_api_key
        if key is not None and (
            not key.startswith(API_KEY_PREFIX)
            or len(key) - len(API_KEY_PREFIX) < DEV_API_KEY_MIN_SECRET
        ):
            raise ValueError(
                f"V2M_DEV_API_KEY must start with '{API_KEY_PREFIX}' and have at least "
                f"{DEV_API_KEY_MIN_SECRET} characters after it (API keys are recognised by "
                "that prefix); unset it to have one generated"
            )
        return self

    @model_validator(mode="after")
    def _default_bucket_cors(self) -> Settings:
        # Unset: the bucket admits the page's origins. Set to [] on purpose: the storage
        # server manages CORS itself (rclone, MinIO) and the bucket's rules are left alone.
        if "s3_cors_origins" not in self.model_fields_set:
            self.s3_cors_origins = list(self.cors_origins) or (
                [] if self.environment == "production" else ["*"]
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment != "production":
            return self
        if self.dev_api_key is not None or self.dev_password is not None:
            raise ValueError(
                "V2M_DEV_API_KEY and V2M_DEV_PASSWORD are for local runs; unset them in "
                "production (create accounts with V2M_BOOTSTRAP_ADMIN_* or api.admin)"
            )
        for name, origins in (
            ("V2M_CORS_ORIGINS", self.cors_origins),
            ("V2M_S3_CORS_ORIGINS", self.s3_cors_origins),
        ):
            if "*" in origins:
                raise ValueError(
                    f"{name} cannot contain '*' in production; list the page's origin "
                    '(e.g. ["https://video2mp3.example.com"])'
                )
        if self.s3_secret_key in _PLACEHOLDER_SECRETS:
            raise ValueError("V2M_S3_SECRET_KEY is a placeholder; set a real secret in production")
        if "change-me" in self.jwt_secret.lower() or len(self.jwt_secret) < 32:
            raise ValueError("V2M_JWT_SECRET must be a real secret of 32+ characters in production")
        if not self.auth_required:
            raise ValueError("V2M_AUTH_REQUIRED cannot be false in production")
        if self.webhook_allow_private_targets:
            raise ValueError("V2M_WEBHOOK_ALLOW_PRIVATE_TARGETS cannot be true in production")
        password = self.bootstrap_admin_password
        if password is not None and "change-me" in password.get_secret_value().lower():
            raise ValueError("V2M_BOOTSTRAP_ADMIN_PASSWORD is a placeholder; set a real one")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
