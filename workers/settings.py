"""All configuration, from environment variables prefixed `SV_` (or a `.env` file)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SV_", env_file=".env", extra="ignore")

    # Storage and queue
    database_url: str = "sqlite:///var/studiovault.db"
    d1_bridge_token: SecretStr | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "studiovault:events"

    # Worker tuning: measured defaults (README, Performance). arq's stock poll_delay=0.5 s and
    # max_jobs=10 cap a worker at ~200 jobs/s no matter how fast the jobs are.
    max_jobs: int = Field(50, ge=1)
    poll_delay: float = Field(0.01, gt=0)
    job_timeout: float = Field(30.0, gt=0)  # a SIGKILLed worker's job is re-run after this + 10 s
    # On SIGTERM/SIGINT a worker picks no new job and gives running ones this long to finish; the
    # rest are cancelled (their batches never commit, so they run again elsewhere). Keep it under
    # your supervisor's kill timeout (docker compose: stop_grace_period).
    shutdown_grace: float = Field(10.0, ge=0)
    # Failures (not conflicts) before an event is dead-lettered. With the backoff below the budget is
    # about 2-3 hours of retries: a provider or D1 outage of that length parks nothing.
    max_attempts: int = Field(20, ge=1)
    max_conflict_retries: int = Field(200, ge=1)  # version conflicts are contention, not failure
    backoff_base: float = Field(1.0, gt=0)  # seconds; doubles per attempt, with jitter
    backoff_cap: float = Field(900.0, gt=0)
    redrive_grace: float = Field(60.0, ge=0)  # pending this long without being applied → re-enqueue
    redrive_every_minutes: int = Field(1, ge=1, le=30)
    # false: this worker runs no scheduled jobs but the re-drive (billing close, reminders). For
    # tests, and for workers you want dedicated to events. Scheduled jobs are idempotent either way.
    scheduled_jobs: bool = True

    # Ingress
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    max_body_bytes: int = 256 * 1024
    razorpay_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    stripe_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    stripe_tolerance_s: int = Field(300, gt=0)
    standard_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    standard_webhook_tolerance_s: int = Field(300, gt=0)

    # Logging
    log_level: str = "INFO"
    log_json: bool = True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
