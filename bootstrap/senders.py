"""Notification senders for the configured channels, over the process's one httpx client, and the
per-branch rate limiter on its Redis."""

from __future__ import annotations

import httpx
from arq.connections import ArqRedis

from config import NotifySettings
from events.notifications import Channel
from handlers.base import NotifyServices
from observability.instruments import CountingLimiter, InstrumentedSender
from observability.metrics import WorkerMetrics
from providers.email import EmailSender
from providers.port import RateLimiter, Sender
from providers.ratelimit import RedisFixedWindow
from providers.sms import Msg91Sender
from providers.whatsapp import WhatsAppSender
from workers.failpoints import Failpoints


def http_client() -> httpx.AsyncClient:
    """The one outbound HTTP client of a process (each sender sets its own request timeout)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)


def build_senders(cfg: NotifySettings, http: httpx.AsyncClient) -> dict[Channel, Sender]:
    """A sender per channel whose credentials are set; the others have none (`channel_not_configured`)."""
    senders: dict[Channel, Sender] = {}
    timeout = cfg.notify_timeout_s
    if cfg.whatsapp_token and cfg.whatsapp_phone_number_id:
        senders["whatsapp"] = WhatsAppSender(
            http, cfg.whatsapp_base_url, cfg.whatsapp_api_version, cfg.whatsapp_phone_number_id,
            cfg.whatsapp_token.get_secret_value(), language=cfg.whatsapp_language, timeout_s=timeout,
        )
    if cfg.msg91_authkey:
        senders["sms"] = Msg91Sender(http, cfg.msg91_base_url, cfg.msg91_authkey.get_secret_value(),
                                     cfg.msg91_template_ids, timeout)
    if cfg.email_api_key:
        senders["email"] = EmailSender(http, cfg.email_base_url, cfg.email_api_key.get_secret_value(),
                                       cfg.email_from, timeout)
    return senders


def notify_services(cfg: NotifySettings, http: httpx.AsyncClient, redis: ArqRedis | None,
                    failpoints: Failpoints | None = None, metrics: WorkerMetrics | None = None, *,
                    max_attempts: int = 20, provider_retry_window_s: float = 24 * 3600.0) -> NotifyServices:
    """What notification dispatch needs. With `metrics`, every provider request is counted and traced
    and the rate limiter's Redis errors counted; crash-test failpoints wrap the senders when set."""
    points = failpoints or Failpoints()
    senders: dict[Channel, Sender] = {}
    for channel, sender in build_senders(cfg, http).items():
        senders[channel] = points.around(InstrumentedSender(sender, metrics) if metrics else sender)
    limiter: RateLimiter | None = RedisFixedWindow(redis) if redis is not None else None
    if limiter is not None and metrics is not None:
        limiter = CountingLimiter(limiter, metrics)
    return NotifyServices(senders=senders, limiter=limiter, rate_per_minute=cfg.notify_rate_per_minute,
                          billable_on=cfg.billable_on, status_unknown_grace_s=cfg.status_unknown_grace_s,
                          fallback_grace_s=cfg.fallback_grace_s, max_attempts=max_attempts,
                          provider_retry_window_s=provider_retry_window_s)
