"""Connected gateway accounts: the `gateway_accounts` rows (migration 0009) and their encrypted credentials.

A row is one gateway account: a studio's (an org's Razorpay `acc_...` or Stripe Connect `acct_...`) or
the platform's own (StudioVault's, paid the overage invoices). Its credentials — webhook secrets (a list:
during a rotation the old ones still verify) and API keys — are one JSON object encrypted with the
`SecretBox` (Fernet, `gateways.secretbox`); they are decrypted only into `Credentials`, whose repr hides
them, and are never logged or printed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from core.clock import epoch_ms
from store import Database, Statement, expect_version

GatewayName = Literal["razorpay", "stripe"]
Role = Literal["studio", "platform"]
_COLUMNS = ("id, gateway, role, org_id, account_ref, endpoint_key, credentials, status, reconciled_until, created_at,"
            " updated_at, version")


class UndecryptableCredentials(Exception):
    """No configured key decrypts a row's credentials (a missing key, or tampering)."""


class AccountError(ValueError):
    """An account operation that cannot be done as asked (unknown id, wrong gateway, ...)."""


class SecretBox(Protocol):
    """Encryption at rest (implemented by `gateways.secretbox.FernetBox`)."""

    def encrypt(self, plaintext: bytes) -> str: ...

    def decrypt(self, token: str) -> bytes: ...

    def rotate(self, token: str) -> str: ...


@dataclass(frozen=True)
class Credentials:
    """What is secret about an account. `webhook_secrets[0]` is the newest; every one verifies."""

    webhook_secrets: tuple[str, ...] = ()
    connect_webhook_secrets: tuple[str, ...] = ()  # Stripe platform only: its Connect endpoint's secrets
    api_key_id: str | None = None  # Razorpay key id (Basic auth user); Stripe: unused
    api_key_secret: str | None = None  # Razorpay key secret, or the Stripe platform's sk_...

    def __repr__(self) -> str:
        return (f"Credentials(webhook_secrets=<{len(self.webhook_secrets)} hidden>, connect_webhook_secrets="
                f"<{len(self.connect_webhook_secrets)} hidden>, api_key={'<hidden>' if self.api_key_secret else None})")

    __str__ = __repr__

    def to_json(self) -> bytes:
        return json.dumps({"webhook_secrets": list(self.webhook_secrets),
                           "connect_webhook_secrets": list(self.connect_webhook_secrets),
                           "api_key_id": self.api_key_id, "api_key_secret": self.api_key_secret}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Credentials:
        doc: dict[str, Any] = json.loads(raw)
        return cls(webhook_secrets=tuple(doc.get("webhook_secrets") or ()),
                   connect_webhook_secrets=tuple(doc.get("connect_webhook_secrets") or ()),
                   api_key_id=doc.get("api_key_id"), api_key_secret=doc.get("api_key_secret"))

    @classmethod
    def parse(cls, doc: object) -> Credentials:
        """From what an operator supplies (JSON on stdin or in a file); blank secrets are dropped (an HMAC
        keyed with "" is public)."""
        if not isinstance(doc, dict):
            raise AccountError('expected a JSON object, e.g. {"webhook_secrets": ["..."], "api_key_id": "...",'
                               ' "api_key_secret": "..."}')
        unknown = set(doc) - {"webhook_secrets", "connect_webhook_secrets", "api_key_id", "api_key_secret"}
        if unknown:
            raise AccountError(f"unknown credential fields: {', '.join(sorted(unknown))}")

        def secret_list(name: str) -> tuple[str, ...]:
            value = doc.get(name) or []
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AccountError(f"{name} must be a list of strings")
            return tuple(v.strip() for v in value if v.strip())

        def text(name: str) -> str | None:
            value = doc.get(name)
            if value is not None and not isinstance(value, str):
                raise AccountError(f"{name} must be a string")
            return value.strip() or None if value else None

        return cls(secret_list("webhook_secrets"), secret_list("connect_webhook_secrets"), text("api_key_id"),
                   text("api_key_secret"))


@dataclass(frozen=True)
class Account:
    id: str  # gwa_...
    gateway: GatewayName
    role: Role
    org_id: str | None  # None: the platform's account
    account_ref: str  # the gateway's id: acc_... / acct_...
    endpoint_key: str  # the opaque path segment of its webhook URL
    status: Literal["active", "disconnected"]
    reconciled_until: int | None  # unix seconds
    created_at: int  # ms
    version: int
    credentials: Credentials = field(repr=False, default_factory=Credentials)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def webhook_path(self) -> str:
        return f"/webhooks/razorpay/{self.endpoint_key}" if self.gateway == "razorpay" else (
            "/webhooks/stripe" if self.role == "platform" else "/webhooks/stripe/connect")


class AccountStore:
    """The `gateway_accounts` table, with credentials encrypted by `box` (None: no key is configured, and
    any row with credentials cannot be read)."""

    def __init__(self, db: Database, box: SecretBox | None) -> None:
        self.db = db
        self.box = box

    def _box(self) -> SecretBox:
        if self.box is None:
            raise UndecryptableCredentials("no encryption key is configured (SV_ACCOUNTS_ENCRYPTION_KEYS)")
        return self.box

    def _account(self, row: dict[str, Any]) -> Account:
        credentials = Credentials.from_json(self._box().decrypt(str(row["credentials"])))
        until = row["reconciled_until"]
        return Account(id=row["id"], gateway=row["gateway"], role=row["role"], org_id=row["org_id"],
                       account_ref=row["account_ref"], endpoint_key=row["endpoint_key"], status=row["status"],
                       reconciled_until=int(until) if until is not None else None,
                       created_at=int(row["created_at"]), version=int(row["version"]), credentials=credentials)

    async def _one(self, where: str, params: Sequence[str]) -> Account | None:
        rows = await self.db.query(f"SELECT {_COLUMNS} FROM gateway_accounts WHERE {where} LIMIT 1", tuple(params))
        return self._account(rows[0]) if rows else None

    async def get(self, account_id: str) -> Account:
        found = await self._one("id = ?", [account_id])
        if found is None:
            raise AccountError(f"no gateway account {account_id}")
        return found

    async def by_endpoint_key(self, key: str) -> Account | None:
        return await self._one("endpoint_key = ? AND status = 'active'", [key])

    async def by_ref(self, gateway: str, account_ref: str) -> Account | None:
        return await self._one("gateway = ? AND account_ref = ? AND status = 'active'", [gateway, account_ref])

    async def platform(self, gateway: str) -> Account | None:
        return await self._one("gateway = ? AND role = 'platform' AND status = 'active'", [gateway])

    async def list(self, org_id: str | None = None, *, platform: bool = False,
                   active_only: bool = False) -> list[Account]:
        where, params = ["1 = 1"], []
        if platform:
            where.append("role = 'platform'")
        elif org_id is not None:
            where.append("org_id = ?")
            params.append(org_id)
        if active_only:
            where.append("status = 'active'")
        rows = await self.db.query(f"SELECT {_COLUMNS} FROM gateway_accounts WHERE {' AND '.join(where)}"
                                   " ORDER BY created_at, id", tuple(params))
        return [self._account(r) for r in rows]

    async def connect(self, *, gateway: GatewayName, account_ref: str, org_id: str | None, credentials: Credentials,
                      now: datetime, account_id: str) -> Account:
        """A new active row (`org_id` None: the platform's). The unique indexes refuse a second active row for
        the same gateway account, or a second platform account per gateway (`ConstraintViolation`)."""
        role: Role = "platform" if org_id is None else "studio"
        key, at = secrets.token_urlsafe(24), epoch_ms(now)
        await self.db.batch([Statement(
            "INSERT INTO gateway_accounts (id, gateway, role, org_id, account_ref, endpoint_key, credentials, status,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
            (account_id, gateway, role, org_id, account_ref, key, self._box().encrypt(credentials.to_json()), at, at))])
        return await self.get(account_id)

    async def _save(self, account: Account, credentials: Credentials, now: datetime,
                    status: str | None = None) -> Account:
        await self.db.batch([
            expect_version("gateway_accounts", account.id, account.version),
            Statement("UPDATE gateway_accounts SET credentials = ?, status = ?, updated_at = ?, version = version + 1"
                      " WHERE id = ? AND version = ?",
                      (self._box().encrypt(credentials.to_json()), status or account.status, epoch_ms(now), account.id,
                       account.version)),
        ])
        return await self.get(account.id)

    async def rotate_webhook_secret(self, account_id: str, secret: str, now: datetime, *, connect: bool = False,
                                    drop_old: bool = False) -> Account:
        """Put `secret` first; the previous ones keep verifying (retries signed before the change) unless
        `drop_old`."""
        if not secret.strip():
            raise AccountError("the new secret is blank")
        account = await self.get(account_id)
        if not account.active:
            raise AccountError(f"{account_id} is disconnected")
        if connect and not (account.gateway == "stripe" and account.role == "platform"):
            raise AccountError("only the Stripe platform account has a Connect endpoint secret")
        creds = account.credentials
        current = creds.connect_webhook_secrets if connect else creds.webhook_secrets
        updated = (secret.strip(),) + (() if drop_old else tuple(s for s in current if s != secret.strip()))
        new = replace(creds, connect_webhook_secrets=updated) if connect else replace(creds, webhook_secrets=updated)
        return await self._save(account, new, now)

    async def set_api_key(self, account_id: str, key_id: str | None, key_secret: str, now: datetime) -> Account:
        account = await self.get(account_id)
        return await self._save(account, replace(account.credentials, api_key_id=key_id, api_key_secret=key_secret),
                                now)

    async def disconnect(self, account_id: str, now: datetime) -> Account:
        """No more deliveries or reconciliation for it; its secrets are erased, its history kept."""
        account = await self.get(account_id)
        return await self._save(account, Credentials(), now, status="disconnected")

    async def rekey(self) -> int:
        """Re-encrypt every row under the first key (after a new key was prepended). Returns how many."""
        rows = await self.db.query("SELECT id, credentials, version FROM gateway_accounts")
        statements: list[Statement] = []
        for row in rows:
            statements += [
                expect_version("gateway_accounts", row["id"], int(row["version"])),
                Statement("UPDATE gateway_accounts SET credentials = ?, version = version + 1"
                          " WHERE id = ? AND version = ?",
                          (self._box().rotate(str(row["credentials"])), row["id"], int(row["version"]))),
            ]
        for i in range(0, len(statements), 200):
            await self.db.batch(statements[i:i + 200])
        return len(rows)

    async def advance_checkpoint(self, account_id: str, until: int) -> bool:
        """Move `reconciled_until` forward to `until` (never back). Returns whether it moved. A monotonic field
        with its own guard: it does not bump `version`, so it never conflicts with an operator's rotation."""
        (changed,) = await self.db.batch([Statement(
            "UPDATE gateway_accounts SET reconciled_until = ? WHERE id = ?"
            " AND (reconciled_until IS NULL OR reconciled_until < ?)", (until, account_id, until))])
        return bool(changed)
