"""Reconciliation: what the gateway knows that our ledger lacks, published under the webhook's own key.

Per connected account, from its checkpoint (minus an overlap) to now:

    list (GatewayApi: Razorpay payments/refunds/disputes, Stripe /v1/events) ─► oldest first, map each
    to the facts a webhook would have brought (events.mapping) ─► per fact:
        in the ledger already   → compare amount and currency: a disagreement is reported, never "fixed"
        in the inbox already    → pending (on its way) or dead (reported with its reason)
        otherwise               → published, under `PaymentFact.dedupe_key()`: the key its webhook uses,
                                  so a late webhook of the same fact is a duplicate, and the other way round
    ─► the checkpoint moves to the end of the window only if every listed object was dealt with; a fact
       that could not be resolved yet (its payment unknown) holds it at that object; an API that stayed
       down (429/5xx past the retries) moves it nowhere.

The account's org is the tenant (from our row, as at the ingress); the gateway's listing carries none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from events.mapping import razorpay as rzp_map
from events.mapping import stripe as stripe_map
from events.mapping.fields import Fact, Ignore, MappingError, event_type_of
from events.mapping.resolve import Signer, fact_envelope
from events.payments import GatewayEvidence, fact_dedupe_key
from events.publish import Publisher
from gateways.accounts import Account, AccountStore
from gateways.port import ApiAccess, GatewayApi, GatewayApiError, Listed
from store import Database

log = structlog.get_logger("studiovault.reconcile")


@dataclass(frozen=True)
class Mismatch:
    object_id: str
    kind: str
    field: str  # amount | currency | status
    ledger: str
    gateway: str


@dataclass
class Report:
    account_id: str
    gateway: str
    account_ref: str
    org_id: str | None
    since: int
    until: int
    listed: int = 0  # objects (or Stripe events) the API returned
    found: int = 0  # money facts among them
    recorded: int = 0  # already in our ledger
    pending: int = 0  # already in the inbox, not yet applied
    published: int = 0  # published by this run
    dead: list[tuple[str, str]] = field(default_factory=list)  # (dedupe key, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (object, reason): e.g. a capture of 0
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (object, reason): held for the next run
    mismatches: list[Mismatch] = field(default_factory=list)
    checkpoint: int | None = None  # after the run
    error: str | None = None  # the API stayed unavailable or refused: nothing published, checkpoint kept


@dataclass(frozen=True)
class Window:
    overlap_s: int = 3600
    first_lookback_s: int = 3 * 86_400


def api_access(account: Account, platform: Account | None) -> ApiAccess:
    """Razorpay: the account's own key pair. Stripe: the platform's secret key, acting for a connected
    account through `Stripe-Account`."""
    if account.gateway == "razorpay":
        return ApiAccess("razorpay", account.credentials.api_key_secret or "", key_id=account.credentials.api_key_id)
    owner = account if account.role == "platform" else platform
    key = owner.credentials.api_key_secret if owner is not None else None
    if not key:
        raise GatewayApiError("no Stripe secret key: set one on the Stripe platform account (accounts set-api-key)")
    return ApiAccess("stripe", key, on_behalf_of=None if account.role == "platform" else account.account_ref)


def _documents(listed: Listed, payments: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    if listed.kind == "events":
        return [(event_type_of(listed.item, "type", "Stripe"), listed.item)]
    return rzp_map.api_documents(listed.kind, listed.item, payments)


def _evidence(listed: Listed, event_type: str, now: datetime) -> GatewayEvidence:
    body = json.dumps(listed.item, sort_keys=True, separators=(",", ":")).encode()
    return GatewayEvidence(gateway_event_id=str(listed.item.get("id") or "unknown")[:120],
                           gateway_event_type=event_type, body_sha256=hashlib.sha256(body).hexdigest(),
                           headers={}, received_at=now, source="reconciliation")


class Reconciler:
    """One account's run; `run()` returns its report."""

    def __init__(self, db: Database, publisher: Publisher, api: GatewayApi, *, store: AccountStore,
                 account: Account, now: datetime, since: int | None = None, window: Window = Window(),
                 progress: Callable[[str, int, int | None], None] | None = None) -> None:
        self.db, self.publisher, self.api, self.store, self.account, self.now = db, publisher, api, store, account, now
        self.signer = Signer(account.gateway, account.account_ref, account.role, account.org_id)
        start = account.reconciled_until if account.reconciled_until is not None else (
            account.created_at // 1000 - window.first_lookback_s + window.overlap_s)
        self.default_since = max(0, start - window.overlap_s)
        self.explicit = since is not None
        self.since = since if since is not None else self.default_since
        self.until = int(now.timestamp())
        self.progress = progress or (lambda _phase, _n, _total: None)
        self.report = Report(account.id, account.gateway, account.account_ref, account.org_id, self.since, self.until)
        self.payments: dict[str, dict[str, Any]] = {}  # Razorpay payment entities listed in this run
        self.invoices: dict[str, str] = {}  # payment id → invoice id, for facts published in this run
        self.held: list[int] = []  # created times of unresolved objects

    async def run(self, platform: Account | None) -> Report:
        try:
            access = api_access(self.account, platform)
            listed = await self.api.list_since(access, self.since, self.until,
                                               on_page=lambda n: self.progress("listing", n, None))
        except GatewayApiError as exc:
            self.report.error = str(exc)
            log.warning("reconcile_unavailable", account_id=self.account.id, gateway=self.account.gateway,
                        error=str(exc))
            return self.report
        listed.sort(key=lambda x: x.created)  # oldest first: payments before their refunds and disputes
        self.report.listed = len(listed)
        self.payments = {str(x.item["id"]): x.item for x in listed if x.kind == "payments" and "id" in x.item}
        for item in listed:
            await self._item(item)
            self.progress("checking", 1, len(listed))
        await self._checkpoint()
        log.info("reconcile_done", account_id=self.account.id, gateway=self.account.gateway, org_id=self.account.org_id,
                 listed=self.report.listed, found=self.report.found, recorded=self.report.recorded,
                 pending=self.report.pending, published=self.report.published, dead=len(self.report.dead),
                 unresolved=len(self.report.unresolved), mismatches=len(self.report.mismatches),
                 checkpoint=self.report.checkpoint)
        return self.report

    async def _item(self, listed: Listed) -> None:
        mapper = stripe_map.map_event if self.account.gateway == "stripe" else rzp_map.map_event
        try:
            documents = _documents(listed, self.payments)
        except MappingError as exc:
            self.report.refused.append((str(listed.item.get("id")), exc.code))
            return
        if not documents:
            await self._status_check(listed, f"{listed.item.get('status')}")
        for event_type, doc in documents:
            try:
                mapped = mapper(event_type, doc)
            except MappingError as exc:
                self.report.refused.append((str(listed.item.get("id")), f"{exc.code}: {exc.detail}"))
                continue
            if isinstance(mapped, Ignore):
                continue
            await self._fact(listed, event_type, mapped)

    async def _fact(self, listed: Listed, event_type: str, fact: Fact) -> None:
        report = self.report
        report.found += 1
        key = fact_dedupe_key(self.account.gateway, self.account.account_ref, fact.kind, fact.object_id())
        rows = await self.db.query(
            "SELECT amount_minor, currency, invoice_id FROM gateway_objects WHERE gateway = ? AND object_id = ?"
            " AND kind = ? AND account_id IN (?, '')",
            (self.account.gateway, fact.object_id(), fact.kind, self.account.account_ref))
        if rows:
            report.recorded += 1
            self._compare(fact, rows[0])
            if fact.kind in ("capture", "failure"):
                self.invoices[str(fact.fields["payment_id"])] = str(rows[0]["invoice_id"])
            return
        existing = await self.db.query("SELECT status, last_error FROM event_inbox WHERE dedupe_key = ?", (key,))
        if existing:
            if existing[0]["status"] == "dead":
                report.dead.append((key, str(existing[0]["last_error"] or "")[:200]))
            else:
                report.pending += 1
            self._remember(fact)
            return
        try:
            envelope = await fact_envelope(self.db, self.signer, fact, _evidence(listed, event_type, self.now),
                                           self.invoices)
        except MappingError as exc:
            if exc.status == 503:
                report.unresolved.append((fact.object_id(), exc.detail))
                self.held.append(listed.created)
            else:
                report.refused.append((fact.object_id(), f"{exc.code}: {exc.detail}"))
            return
        published = await self.publisher.publish(envelope)
        if published.duplicate:  # a webhook landed between our look and our publish
            report.pending += 1
        else:
            report.published += 1
            log.info("reconcile_published", account_id=self.account.id, dedupe_key=key, event_id=published.event_id,
                     type=envelope.type, org_id=envelope.org_id)
        self._remember(fact, envelope.payload.get("invoice_id"))

    def _remember(self, fact: Fact, invoice_id: object = None) -> None:
        invoice = invoice_id if isinstance(invoice_id, str) else fact.invoice_id
        if fact.kind in ("capture", "failure") and invoice:
            self.invoices[str(fact.fields["payment_id"])] = invoice

    def _compare(self, fact: Fact, row: dict[str, Any]) -> None:
        gateway_amount, gateway_currency = int(fact.fields["amount_minor"]), str(fact.fields["currency"])
        for name, ledger, gateway in (("amount", str(row["amount_minor"]), str(gateway_amount)),
                                      ("currency", str(row["currency"]), gateway_currency)):
            if ledger != gateway:
                self._mismatch(Mismatch(fact.object_id(), fact.kind, name, ledger, gateway))

    async def _status_check(self, listed: Listed, status: str) -> None:
        """A listed object in a state that records nothing (a payment not captured, a refund pending) which
        our ledger says moved money: a status disagreement."""
        object_id = str(listed.item.get("id"))
        rows = await self.db.query(
            "SELECT kind FROM gateway_objects WHERE gateway = ? AND object_id = ? AND account_id IN (?, '')"
            " AND kind IN ('capture', 'refund')", (self.account.gateway, object_id, self.account.account_ref))
        for row in rows:
            self._mismatch(Mismatch(object_id, str(row["kind"]), "status", "recorded", status))

    def _mismatch(self, mismatch: Mismatch) -> None:
        self.report.mismatches.append(mismatch)
        log.warning("reconcile_mismatch", account_id=self.account.id, gateway=self.account.gateway,
                    org_id=self.account.org_id, object_id=mismatch.object_id, kind=mismatch.kind,
                    field=mismatch.field, ledger=mismatch.ledger, gateway_value=mismatch.gateway)

    async def _checkpoint(self) -> None:
        """Forward only, and only over what was dealt with: an explicit --since later than where this
        account's run would have started leaves a gap, so it moves nothing."""
        current = self.account.reconciled_until
        if self.explicit and self.since > self.default_since:
            self.report.checkpoint = current  # a window that starts late: what lies before it is unexamined
            return
        target = min(self.held) if self.held else self.until
        await self.store.advance_checkpoint(self.account.id, target)
        self.report.checkpoint = max(target, current or target)


async def reconcile_accounts(db: Database, publisher: Publisher, api: GatewayApi, *, store: AccountStore,
                             accounts: list[Account], now: datetime, since: int | None = None,
                             window: Window = Window(),
                             progress: Callable[[Account, str, int, int | None], None] | None = None,
                             ) -> list[Report]:
    """Reconcile each active account (the Stripe platform's key serves its connected accounts)."""
    platform = await store.platform("stripe")
    reports = []
    for account in accounts:
        if not account.active:
            continue
        step = (lambda phase, n, total, a=account: progress(a, phase, n, total)) if progress else None
        reconciler = Reconciler(db, publisher, api, store=store, account=account, now=now, since=since,
                                window=window, progress=step)
        reports.append(await reconciler.run(platform))
    return reports
