"""The composition root for notifications: senders for the configured channels, over the worker's ONE
shared httpx client, and the per-branch rate limiter on the worker's Redis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from providers.base import Channel, Sender
from providers.email import EmailSender
from providers.ratelimit import RateLimiter, RedisFixedWindow
from providers.settings import NotifySettings
from providers.sms import Msg91Sender
from providers.whatsapp import WhatsAppSender

SERVICE_KEY = "notify"


@dataclass(frozen=True)
class NotifyServices:
    senders: Mapping[Channel, Sender]
    limiter: RateLimiter | None = None
    settings: NotifySettings = field(default_factory=NotifySettings)


def build_senders(settings: NotifySettings, http: httpx.AsyncClient) -> dict[Channel, Sender]:
    senders: dict[Channel, Sender] = {}
    timeout = settings.notify_timeout_s
    if settings.whatsapp_token and settings.whatsapp_phone_number_id:
        senders["whatsapp"] = WhatsAppSender(
            http, settings.whatsapp_base_url, settings.whatsapp_api_version, settings.whatsapp_phone_number_id,
            settings.whatsapp_token.get_secret_value(), language=settings.whatsapp_language, timeout_s=timeout,
        )
    if settings.msg91_authkey:
        senders["sms"] = Msg91Sender(http, settings.msg91_base_url, settings.msg91_authkey.get_secret_value(),
                                     settings.msg91_template_ids, timeout)
    if settings.email_api_key:
        senders["email"] = EmailSender(http, settings.email_base_url, settings.email_api_key.get_secret_value(),
                                       settings.email_from, timeout)
    return senders


def build_notify_services(http: httpx.AsyncClient, redis: Any = None,
                          settings: NotifySettings | None = None) -> dict[str, Any]:
    """`{"notify": NotifyServices}` for the worker's `Deps.services`."""
    settings = settings or NotifySettings()
    limiter = RedisFixedWindow(redis) if redis is not None else None
    return {SERVICE_KEY: NotifyServices(build_senders(settings, http), limiter, settings)}
