"""The settings, section by section. Each field is the environment variable `SV_<FIELD NAME>`.

Field names are unique across sections (tested), so every variable names exactly one field; the
defaults are the measured, shipped ones (README, Settings).
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SQLITE_PREFIX = "sqlite:///"
D1_PREFIXES = ("d1+https://", "d1+http://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(Section):
    """Where the database is: the embedded SQLite file, or Cloudflare D1 through the bridge Worker."""

    database_url: str = "sqlite:///var/studiovault.db"
    d1_bridge_token: SecretStr | None = None

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
            return url
        if url.startswith(D1_PREFIXES) and url.split("://", 1)[1]:
            return url
        raise ValueError("expected sqlite:///path/to/file.db or d1+https://<bridge worker host>")

    @property
    def is_d1(self) -> bool:
        return self.database_url.startswith(D1_PREFIXES)


class QueueSettings(Section):
    """The arq queue on Redis."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = Field("studiovault:events", min_length=1)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if not url.startswith(REDIS_SCHEMES):
            raise ValueError("expected redis://host:port/db (or rediss://, unix://)")
        return url


class WorkerSettings(Section):
    """Worker tuning and the failure policy."""

    # arq's stock poll_delay=0.5 s and max_jobs=10 cap a worker at ~200 jobs/s however fast the jobs are.
    max_jobs: int = Field(50, ge=1)
    poll_delay: float = Field(0.01, gt=0)
    job_timeout: float = Field(30.0, gt=0)  # a SIGKILLed worker's job is re-run after this + 10 s
    # On SIGTERM/SIGINT a worker picks no new job and gives running ones this long to finish; keep it
    # under your supervisor's kill timeout (docker compose: stop_grace_period).
    shutdown_grace: float = Field(10.0, ge=0)
    # Failures (not conflicts) before an event is dead-lettered: with the backoff below, 1.3-2.5 h.
    max_attempts: int = Field(20, ge=1)
    max_conflict_retries: int = Field(200, ge=1)  # version conflicts are contention, not failure
    backoff_base: float = Field(1.0, gt=0)  # seconds; doubles per attempt, with jitter
    backoff_cap: float = Field(900.0, gt=0)
    redrive_grace: float = Field(60.0, ge=0)  # pending this long without being applied → re-enqueue
    redrive_every_minutes: int = Field(1, ge=1, le=30)
    # false: no scheduled jobs but the re-drive (for tests and workers dedicated to events).
    scheduled_jobs: bool = True
    # Crash testing only: comma-separated failpoints (before_batch, after_batch, after_send) at which
    # the worker SIGKILLs itself. Never set in production.
    failpoints: str = ""

    @property
    def failpoint_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.failpoints.split(",") if name.strip())


class BillingSettings(Section):
    """The month-end close producer's schedule and pace."""

    billing_cron_enabled: bool = True
    billing_cron_minute: int = Field(5, ge=0, le=59)
    billing_page_size: int = Field(500, ge=1, le=5000)
    billing_publish_concurrency: int = Field(32, ge=1, le=1000)


class IngressSettings(Section):
    """The webhook ingress: bind address, limits, and the secrets each source is verified with."""

    ingress_host: str = "127.0.0.1"
    ingress_port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    # Answer before the gateway gives up (Razorpay: 5 s); past this the answer is 503 and it retries.
    ingress_deadline_s: float = Field(4.0, gt=0)
    ingress_retry_after_s: int = Field(60, ge=1)
    razorpay_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    stripe_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    stripe_tolerance_s: int = Field(300, gt=0)
    standard_webhook_secrets: list[SecretStr] = Field(default_factory=list)  # whsec_…, our own producers
    standard_webhook_tolerance_s: int = Field(300, gt=0)
    r2_buckets: list[str] = Field(default_factory=list)  # accept R2 notifications only from these (empty: any)
    r2_accounts: list[str] = Field(default_factory=list)

    @field_validator("razorpay_webhook_secrets", "stripe_webhook_secrets", "standard_webhook_secrets")
    @classmethod
    def _drop_blank(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        # A blank secret would let anyone sign (an HMAC keyed with "" is public): never keep one.
        return [s for s in secrets if s.get_secret_value().strip()]


class NotifySettings(Section):
    """Notification providers (a channel whose credentials are unset has no sender) and the send cap."""

    # WhatsApp Cloud API: POST {base}/{version}/{phone_number_id}/messages, Bearer token.
    whatsapp_base_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v21.0"
    whatsapp_phone_number_id: str = ""
    whatsapp_token: SecretStr | None = None
    whatsapp_language: str = "en"  # must match the approved template translation exactly
    # MSG91 flow (India, DLT): POST {base}/api/v5/flow, `authkey` header; template ids per kind.
    msg91_base_url: str = "https://control.msg91.com"
    msg91_authkey: SecretStr | None = None
    msg91_template_ids: dict[str, str] = Field(default_factory=dict)  # kind → MSG91 template (flow) id
    # Resend-shaped e-mail API: POST {base}/emails, Bearer key, Idempotency-Key header.
    email_base_url: str = "https://api.resend.com"
    email_api_key: SecretStr | None = None
    email_from: str = "StudioVault <notifications@mail.studiovault.in>"
    notify_timeout_s: float = Field(8.0, gt=0)  # one request; keep it well under the job timeout
    notify_rate_per_minute: int = Field(60, ge=1)  # per branch; a branch's config may change it


class ObservabilitySettings(Section):
    """Metrics, tracing and what operators see: the worker's metrics port, the shared pipeline-state
    snapshot's refresh interval, OpenTelemetry (off unless an exporter is named), the operator's zone."""

    # The worker serves Prometheus text on this port (every path); unset: no metrics server. Each
    # worker process on a host needs its own port. The ingress serves GET /metrics on its own port.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # The pipeline-state gauges (inbox counts, oldest pending age, queue depth) come from one snapshot
    # in Redis, refreshed this often by whichever process takes the refresh lock.
    pipeline_state_interval_s: float = Field(15.0, ge=0.2, le=300)
    # OpenTelemetry spans: "none" (off, the default) or "console" (JSON spans on stdout).
    otel_exporter: Literal["none", "console"] = "none"
    # `dead list`, `dead show`, `status` print times in this IANA zone (`--tz` overrides).
    operator_timezone: str = "Asia/Kolkata"  # core.clock.DEFAULT_TIMEZONE, the studios' default

    @field_validator("operator_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone name, e.g. Asia/Kolkata or UTC") from exc
        return name


class LogSettings(Section):
    log_level: LogLevel = "INFO"
    log_json: bool = True

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
