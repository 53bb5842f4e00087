"""Gateway accounts and APIs, wired: the Fernet box from `SV_ACCOUNTS_ENCRYPTION_KEYS`, the account store
on the process's database, the ingress's cached directory, and the list APIs over the process's httpx
client (for reconciliation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from config import GatewaySettings
from gateways.accounts import AccountStore
from gateways.directory import AccountDirectory
from gateways.secretbox import FernetBox
from store import Database

if TYPE_CHECKING:
    import httpx

    from gateways.http_api import HttpGatewayApi


def secret_box(cfg: GatewaySettings) -> FernetBox | None:
    """None when no key is configured: accounts can then be neither written nor read. `cryptography`
    is loaded when a secret is first opened (`gateways.secretbox`)."""
    keys = [k.get_secret_value() for k in cfg.accounts_encryption_keys]
    return FernetBox(keys) if keys else None


def account_store(db: Database, cfg: GatewaySettings) -> AccountStore:
    return AccountStore(db, secret_box(cfg))


def account_directory(db: Database, cfg: GatewaySettings) -> AccountDirectory:
    return AccountDirectory(account_store(db, cfg), ttl_s=cfg.accounts_cache_ttl_s)


def gateway_api(cfg: GatewaySettings, http: httpx.AsyncClient) -> HttpGatewayApi:
    from events.mapping.stripe import HANDLED_TYPES  # noqa: PLC0415
    from gateways.http_api import HttpGatewayApi  # noqa: PLC0415

    return HttpGatewayApi(http, razorpay_url=cfg.razorpay_api_url, stripe_url=cfg.stripe_api_url,
                          stripe_event_types=HANDLED_TYPES, timeout_s=cfg.gateway_api_timeout_s,
                          max_attempts=cfg.gateway_api_max_attempts, backoff_base=cfg.gateway_api_backoff_base,
                          backoff_cap=cfg.gateway_api_backoff_cap)
