"""The settings, section by section. Each field is the environment variable `SV_<FIELD NAME>`.

Field names are unique across sections (tested), so every variable names exactly one field; the
defaults are the measured, shipped ones (README, Settings).
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SQLITE_PREFIX = "sqlite:///"
D1_PREFIXES = ("d1+https://", "d1+http://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
BillableMoment = Literal["accepted", "delivered"]
DEFAULT_BILLABLE_ON: dict[str, BillableMoment] = {"whatsapp": "delivered", "sms": "accepted", "email": "accepted"}

# A producer's name (`SV_PRODUCER_SECRETS` keys, `event_inbox.producer`).
PRODUCER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def _is_whsec(secret: str) -> bool:
    raw = secret.removeprefix("whsec_")
    try:
        return secret.startswith("whsec_") and bool(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True))
    except (binascii.Error, ValueError):
        return False


def is_fernet_key(key: str) -> bool:
    """Whether `key` is what `cryptography`'s `Fernet` accepts (url-safe base64 of 32 bytes), told without
    importing `cryptography`."""
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (ValueError, binascii.Error):
        return False


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(Section):
    """Where the database is: the embedded SQLite file, or Cloudflare D1 through the bridge Worker."""

    database_url: str = "sqlite:///var/studiovault.db"
    # The bridge Worker's application token: data statements only (the bridge refuses DDL, PRAGMA, ...).
    d1_bridge_token: SecretStr | None = None
    # The bridge Worker's migration token: `studiovault migrate` only; never given to workers or the ingress.
    d1_migration_token: SecretStr | None = None

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
    # Every Redis call is bounded: connecting, and each command (arq's polls are not blocking calls).
    redis_connect_timeout_s: float = Field(2.0, gt=0)
    redis_command_timeout_s: float = Field(5.0, gt=0)

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
    # Concurrent jobs share engine calls: their read snapshots go in one call, their batches commit
    # together, each still all-or-nothing (`store.coalesce`). false: one engine call each, for comparison.
    coalesce: bool = True
    job_timeout: float = Field(30.0, gt=0)  # a SIGKILLed worker's job is re-run after this + 10 s
    # On SIGTERM/SIGINT a worker picks no new job and gives running ones this long to finish; keep it
    # under your supervisor's kill timeout (docker compose: stop_grace_period).
    shutdown_grace: float = Field(10.0, ge=0)
    # Failures (not conflicts) before an event is dead-lettered: with the backoff below, 1.3-2.5 h.
    max_attempts: int = Field(20, ge=1)
    max_conflict_retries: int = Field(200, ge=1)  # version conflicts are contention, not failure
    backoff_base: float = Field(1.0, gt=0)  # seconds; doubles per attempt, with jitter
    backoff_cap: float = Field(900.0, gt=0)
    # A provider's "not now" (429, 5xx, timeout) is retried past max_attempts until the event is this old.
    provider_retry_window_s: float = Field(24 * 3600.0, gt=0)
    redrive_grace: float = Field(60.0, ge=0)  # pending this long without being applied → re-enqueue
    redrive_every_minutes: int = Field(1, ge=1, le=30)
    # The inbox feed poller (one per worker; of several workers one polls at a time): events other
    # producers wrote straight into the inbox (the app's outbox) are enqueued within about this long.
    feed_enabled: bool = True
    feed_poll_interval: float = Field(0.25, gt=0, le=60)
    feed_page_size: int = Field(500, ge=1, le=1000)
    feed_retention_s: float = Field(3600.0, ge=0)  # feed rows already enqueued are pruned after this
    # false: no scheduled jobs but the re-drive (for tests and workers dedicated to events).
    scheduled_jobs: bool = True
    # Touched after each successful poll of Redis; `studiovault worker --check` fails when it is older
    # than heartbeat_max_age_s. One file per worker: give each worker on one host its own.
    heartbeat_file: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "studiovault-worker.heartbeat")
    heartbeat_max_age_s: float = Field(30.0, gt=0)
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
    # Gateway webhook secrets are per account, encrypted in gateway_accounts (`studiovault accounts ...`).
    stripe_tolerance_s: int = Field(300, gt=0)
    standard_webhook_secrets: list[SecretStr] = Field(default_factory=list)  # whsec_…, our own producers
    standard_webhook_tolerance_s: int = Field(300, gt=0)
    r2_buckets: list[str] = Field(default_factory=list)  # accept R2 notifications only from these (empty: any)
    r2_accounts: list[str] = Field(default_factory=list)
    # Delivery-status webhooks of the notification providers (README, Notifications).
    # WhatsApp: the App Secret(s) that sign X-Hub-Signature-256 (several during a rotation), and the
    # verify token typed into the App Dashboard for the GET subscription handshake.
    whatsapp_app_secrets: list[SecretStr] = Field(default_factory=list)
    whatsapp_verify_token: SecretStr | None = None
    # MSG91 does not sign delivery reports: the report URL carries one of these unguessable tokens as
    # its last path segment (/webhooks/msg91/<token>); several during a rotation.
    msg91_webhook_tokens: list[SecretStr] = Field(default_factory=list)
    # Resend signs with Svix (Standard Webhooks): whsec_… secrets, several during a rotation.
    resend_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    resend_tolerance_s: int = Field(300, gt=0)
    # `POST /events` producers (the desktop sync service, other tools) and their Standard Webhooks secrets,
    # e.g. {"desktop-sync": ["whsec_new", "whsec_old"]}: several during a rotation. The secret that verifies
    # a request names its producer, so no two producers may share one.
    producer_secrets: dict[str, list[SecretStr]] = Field(default_factory=dict)

    @field_validator("standard_webhook_secrets", "whatsapp_app_secrets", "msg91_webhook_tokens",
                     "resend_webhook_secrets")
    @classmethod
    def _drop_blank(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        # A blank secret would let anyone sign (an HMAC keyed with "" is public): never keep one.
        return [s for s in secrets if s.get_secret_value().strip()]

    @field_validator("whatsapp_verify_token")
    @classmethod
    def _blank_is_unset(cls, token: SecretStr | None) -> SecretStr | None:
        return token if token is not None and token.get_secret_value().strip() else None

    @field_validator("producer_secrets")
    @classmethod
    def _producers(cls, producers: dict[str, list[SecretStr]]) -> dict[str, list[SecretStr]]:
        kept: dict[str, list[SecretStr]] = {}
        seen: dict[str, str] = {}
        for name, secrets in producers.items():
            if not PRODUCER_NAME.fullmatch(name):
                raise ValueError(f"producer name {name!r} must match {PRODUCER_NAME.pattern}")
            kept[name] = [s for s in secrets if s.get_secret_value().strip()]
            for secret in kept[name]:
                value = secret.get_secret_value()
                if not _is_whsec(value):
                    raise ValueError(f"producer {name!r}: a secret must be whsec_ followed by non-empty base64")
                if value in seen:
                    raise ValueError(f"producers {seen[value]!r} and {name!r} share a secret: each needs its own")
                seen[value] = name
        return kept


class GatewaySettings(Section):
    """Gateway accounts (credentials encrypted at rest), the ingress's account cache, and reconciliation
    through the gateways' list APIs."""

    # Fernet keys (url-safe base64 of 32 bytes), a JSON list: the first encrypts, any decrypts. Rotate by
    # prepending a new key, `studiovault accounts rekey`, then dropping the old one.
    accounts_encryption_keys: list[SecretStr] = Field(default_factory=list)
    # How long the ingress trusts an account it looked up (a rotation takes effect within this).
    accounts_cache_ttl_s: float = Field(5.0, ge=0, le=300)
    razorpay_api_url: str = "https://api.razorpay.com"
    stripe_api_url: str = "https://api.stripe.com"
    gateway_api_timeout_s: float = Field(15.0, gt=0)
    # 429s, 5xx and connection failures: this many attempts per request, backing off (Retry-After honoured).
    gateway_api_max_attempts: int = Field(6, ge=1, le=20)
    gateway_api_backoff_base: float = Field(1.0, gt=0)
    gateway_api_backoff_cap: float = Field(60.0, gt=0)
    reconcile_cron_enabled: bool = True
    reconcile_cron_minute: int = Field(20, ge=0, le=59)  # hourly, at this minute
    # Each run re-reads this much before the checkpoint: late-listed objects are caught, duplicates are free.
    reconcile_overlap_s: int = Field(3600, ge=0)
    # A first run (no checkpoint) starts this long before the account was connected.
    reconcile_first_lookback_s: int = Field(3 * 86_400, ge=0)

    @field_validator("accounts_encryption_keys")
    @classmethod
    def _fernet_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for i, key in enumerate(keys):
            if not is_fernet_key(key.get_secret_value()):
                raise ValueError(f"key {i + 1} is not a Fernet key (url-safe base64 of 32 bytes); make one with"
                                 " `studiovault accounts new-key`")
        return keys


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
    # The rate card's billable moment per channel: "accepted" (the provider's API took the message) or
    # "delivered" (its status webhook said delivered or read). Defaults follow what each provider
    # charges for: Meta per delivered template, MSG91 every submitted SMS, Resend every sent e-mail.
    billable_on: dict[str, BillableMoment] = Field(default_factory=lambda: dict(DEFAULT_BILLABLE_ON))
    # A status naming a message we have no record of yet is retried this long (its send's own batch
    # may still be committing), then dead-lettered as `unknown_message` (replayable).
    status_unknown_grace_s: float = Field(300.0, ge=0)
    # A late WhatsApp failure's SMS fallback waits this long, so that a `delivered` racing the
    # `failed` (several devices) can still cancel it.
    fallback_grace_s: float = Field(30.0, ge=0)

    @field_validator("billable_on")
    @classmethod
    def _channels(cls, value: dict[str, BillableMoment]) -> dict[str, BillableMoment]:
        unknown = sorted(set(value) - set(DEFAULT_BILLABLE_ON))
        if unknown:
            raise ValueError(f"unknown channel(s) {', '.join(unknown)}: use whatsapp, sms, email")
        return {**DEFAULT_BILLABLE_ON, **value}


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
