"""Notification provider settings, from `SV_` environment variables (tests point the base URLs at
local servers). A channel whose credentials are unset has no sender: its sends fail permanently as
`channel_not_configured`, which falls back (WhatsApp → SMS) or dead-letters with an audit row."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SV_", env_file=".env", extra="ignore")

    # WhatsApp Cloud API: POST {base}/{version}/{phone_number_id}/messages, Bearer token.
    whatsapp_base_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v21.0"
    whatsapp_phone_number_id: str = ""
    whatsapp_token: SecretStr | None = None
    whatsapp_language: str = "en"  # must match the approved template translation exactly
    # MSG91 flow (India, DLT): POST {base}/api/v5/flow, `authkey` header; template ids per kind.
    msg91_base_url: str = "https://control.msg91.com"
    msg91_authkey: SecretStr | None = None
    msg91_template_ids: dict[str, str] = Field(default_factory=dict)  # kind -> MSG91 template (flow) id
    # Resend-shaped e-mail API: POST {base}/emails, Bearer key, Idempotency-Key header.
    email_base_url: str = "https://api.resend.com"
    email_api_key: SecretStr | None = None
    email_from: str = "StudioVault <notifications@mail.studiovault.in>"
    # One request's time limit; keep it well under the worker's job timeout.
    notify_timeout_s: float = Field(8.0, gt=0)
    # Per-branch send cap (fixed window); a branch's notification config may lower or raise it.
    notify_rate_per_minute: int = Field(60, ge=1)
