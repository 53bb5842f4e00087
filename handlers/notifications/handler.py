"""`notification.due` → send the message through its channel's provider, record it for billing.

    read (one round trip) → checks → [quiet hours / rate cap → Defer] → for each channel in the chain:
        claim batch ('sending') → ONE provider request → outcome
    → Plan: claim 'sent' + `notifications` row (rate-card cost, billed = 0) + audits, with the inbox update

Delivery semantics. The unit of work commits after the handler returns, so a send could be repeated
by a retry after a crash. The claim, committed in its own small batch just before the request, closes
that: a retry that finds the claim 'sent'/'unknown' records and never sends; one that finds it
'sending' (the worker died between the request and the unit's batch: the only window, as long as one
request plus one batch) re-sends e-mail with the same Idempotency-Key, and for WhatsApp and SMS (no
idempotency key) records the send as 'unknown' with an audit row instead of sending again: at most
once there, billed, because the request almost certainly went out (the claim commits microseconds
before it). A provider's "not now" (429, 5xx, timeout) releases the claim ('retry') and retries
honouring Retry-After; a permanent refusal marks it 'failed' and falls back to SMS when the branch
allows; when every channel failed, the plan writes an audit row and marks the event dead itself (a
`Rejected` would write nothing), so `studiovault dead replay` can retry it after a fix.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import structlog

from core.clock import epoch_ms
from core.money import to_paise
from events import inbox
from events.notifications import Channel, NotificationDue
from handlers.base import Defer, HandlerContext, NotifyServices, Plan, Rejected, RetryLater
from handlers.notifications.plan import (
    Claim,
    ConfigError,
    GiveUp,
    NotifyConfig,
    Record,
    Send,
    channel_chain,
    cost_of,
    is_replay,
    next_step,
    normalize_phone,
    notify_config,
    quiet_until,
)
from handlers.notifications.records import (
    Subject,
    audit,
    claim_again,
    claim_new,
    failed_without_request,
    notification_row,
)
from handlers.notifications.records import set_status as claim_status
from handlers.notifications.templates import TEMPLATES, Facts, render
from providers.port import OutboundMessage, SendRejected, SendResult, SendRetryable
from store import Statement

log = structlog.get_logger("studiovault.notifications")


async def dispatch_notification(event: NotificationDue, ctx: HandlerContext) -> Plan:
    services = ctx.services.notify
    if services is None:
        raise Rejected("notifications_not_configured", "the worker has no notification senders")
    project, invoice, existing, claim_rows = await ctx.db.query_many([
        Statement(
            "SELECT p.branch_id, p.details_json, c.branch_id AS client_branch_id, c.name AS client_name, c.phone,"
            " c.profile_json, b.org_id, b.name AS branch_name, b.invoice_prefix, o.name AS org_name, o.config_json"
            " FROM projects p JOIN clients c ON c.id = p.client_id JOIN branches b ON b.id = p.branch_id"
            " JOIN organizations o ON o.id = b.org_id WHERE p.id = ?", (event.project_id,)),
        Statement("SELECT branch_id, project_id, amount_total, status, due_at FROM invoices WHERE id = ?",
                  (event.invoice_id or "",)),
        Statement("SELECT channel FROM notifications WHERE id = ?", (event.notification_id,)),
        Statement("SELECT channel, status, version, provider_message_id, last_error FROM notification_sends"
                  " WHERE notification_id = ?", (event.notification_id,)),
    ])
    row = _check_tenant(event, ctx, project, invoice)
    if existing:
        return Plan(outcome="ignored", log={"reason": "already_recorded", "channel": existing[0]["channel"]})
    if event.kind == "invoice_due" and invoice and invoice[0]["status"] not in ("issued", "overdue"):
        return Plan(outcome="ignored", log={"reason": f"invoice_{invoice[0]['status']}"})
    try:
        cfg = notify_config(_text(row["config_json"]), str(row["branch_id"]), services.rate_per_minute)
    except ConfigError as exc:
        raise Rejected("bad_notification_config", str(exc)) from exc
    template = TEMPLATES.get(event.kind)
    if template is None:
        raise Rejected("unknown_notification_kind", f"no template for {event.kind!r}")
    if template.needs_invoice and not invoice:
        raise Rejected("invoice_required", f"{event.kind} names no invoice")
    subject = Subject(event.notification_id, event.kind, ctx.envelope.event_id, str(row["org_id"]),
                      str(row["branch_id"]), event.project_id)
    claims = {r["channel"]: Claim(r["channel"], r["status"], int(r["version"]), r["provider_message_id"],
                                  r["last_error"]) for r in claim_rows}
    run = _Run(event, ctx, services=services, cfg=cfg, subject=subject,
               facts=_facts(row, invoice[0] if invoice else None, cfg, event), row=row, claims=claims)
    return await run.dispatch()


def _check_tenant(event: NotificationDue, ctx: HandlerContext, project: list[dict[str, object]],
                  invoice: list[dict[str, object]]) -> dict[str, object]:
    if not project:
        raise Rejected("unknown_project", event.project_id)
    row = project[0]
    env = ctx.envelope
    if row["org_id"] != env.org_id or row["branch_id"] != env.branch_id or row["client_branch_id"] != row["branch_id"]:
        raise Rejected("wrong_tenant", f"project {event.project_id} is not in branch {env.branch_id}")
    if event.invoice_id and not invoice:
        raise Rejected("unknown_invoice", event.invoice_id)
    if invoice and (invoice[0]["branch_id"] != env.branch_id
                    or invoice[0]["project_id"] not in (None, event.project_id)):
        raise Rejected("wrong_tenant", f"invoice {event.invoice_id} is not this project's")
    return row


def _facts(row: dict[str, object], invoice: dict[str, object] | None, cfg: NotifyConfig,
           event: NotificationDue) -> Facts:
    details = _json(row["details_json"])
    title = str(details.get("title") or details.get("name") or "your shoot")
    due = invoice["due_at"] if invoice else None
    return Facts(
        client_name=str(row["client_name"]), studio_name=str(row["org_name"]), branch_name=str(row["branch_name"]),
        project_title=title,
        invoice_ref=f"{row['invoice_prefix'] or ''}{event.invoice_id[-8:].upper()}" if event.invoice_id else "",
        amount_paise=to_paise(str(invoice["amount_total"])) if invoice else None,
        due_at=datetime.fromtimestamp(int(str(due)) / 1000, UTC) if due is not None else None,
        timezone=cfg.timezone,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _json(value: object) -> dict[str, object]:
    try:
        parsed = json.loads(str(value)) if value else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class _Run:
    """One attempt at one notification: walks the channel chain, at most one request per channel."""

    def __init__(self, event: NotificationDue, ctx: HandlerContext, *, services: NotifyServices, cfg: NotifyConfig,
                 subject: Subject, facts: Facts, row: dict[str, object], claims: dict[Channel, Claim]) -> None:
        self.event, self.ctx, self.services, self.cfg = event, ctx, services, cfg
        self.s, self.facts, self.row, self.claims = subject, facts, row, claims
        self.now_ms = epoch_ms(ctx.now)
        self.chain = channel_chain(event.channel, cfg)
        self.replay = is_replay(self.chain, claims)
        self.failures: list[tuple[Channel, str]] = []
        self.pending: list[Statement] = []  # failures to record with the next batch
        self.result = SendResult(None)

    async def dispatch(self) -> Plan:
        gated = False
        while True:
            step = next_step(self.chain, self.claims, frozenset(ch for ch, _ in self.failures), self.replay)
            if isinstance(step, Record):
                return self._record(step)
            if isinstance(step, GiveUp):
                return self._give_up()
            resuming = step.existing is not None and step.existing.status == "sending"
            if not gated and not resuming:
                await self._gate()
                gated = True
            await self._attempt(step)
            if step.channel not in {ch for ch, _ in self.failures}:
                return self._sent(step.channel)

    async def _gate(self) -> None:
        """Quiet hours (non-urgent only), then the branch's send cap: not now → Defer."""
        if not self.event.urgent:
            until = quiet_until(self.ctx.now, self.cfg)
            if until is not None:
                raise Defer(until.astimezone(UTC), "quiet_hours")
        if self.services.limiter is not None:
            until = await self.services.limiter.acquire(f"branch:{self.s.branch_id}", self.ctx.now,
                                                        self.cfg.rate_per_minute)
            if until is not None:
                raise Defer(until, "branch_rate_cap")

    async def _attempt(self, step: Send) -> None:
        """Claim, send once, and leave the outcome in `self.claims` / `self.failures`."""
        ch = step.channel
        sender = self.services.senders.get(ch)
        to = self._recipient(ch)
        if sender is None or to is None:
            reason = "channel_not_configured" if sender is None else "no_recipient"
            self._fail(ch, reason, failed_without_request(self.s, ch, step.existing, reason, self.now_ms))
            return
        message = self._message(ch, to)
        claim = claim_new(self.s, ch, self.now_ms) if step.existing is None else claim_again(
            self.s, step.existing, self.now_ms)
        await self.ctx.db.batch([*self.pending, *claim])  # committed BEFORE the request
        self.pending = []
        held = Claim(ch, "sending", step.existing.version + 1 if step.existing else 1)
        self.claims[ch] = held
        try:
            result = await sender.send(message)
        except SendRetryable as exc:
            await self.ctx.db.batch(claim_status(self.s, held, "retry", self.now_ms, error=exc.reason))
            raise RetryLater(exc.reason, exc.retry_after_s or 0.0) from exc
        except SendRejected as exc:
            self._fail(ch, exc.reason, claim_status(self.s, held, "failed", self.now_ms, error=exc.reason))
            return
        self.result = result

    def _fail(self, ch: Channel, reason: str, statements: list[Statement]) -> None:
        self.failures.append((ch, reason))
        self.pending.extend(statements)
        log.warning("notification_channel_failed", notification_id=self.s.notification_id, channel=ch, error=reason)

    def _recipient(self, ch: Channel) -> str | None:
        if ch == "email":
            email = _json(self.row["profile_json"]).get("email")
            return str(email) if email and "@" in str(email) else None
        return normalize_phone(str(self.row["phone"] or ""))

    def _message(self, ch: Channel, to: str) -> OutboundMessage:
        r = render(self.event.kind, self.facts, ch)
        return OutboundMessage(ch, to, self.event.kind, r.params, self.s.notification_id, self.s.claim_id(ch),
                               r.subject, r.text, r.html)

    def _sent(self, ch: Channel) -> Plan:
        result = self.result
        statements = [*self.pending, *claim_status(self.s, self.claims[ch], "sent", self.now_ms,
                                                   error=result.note or None,
                                                   message_id=result.provider_message_id)]
        return self._billable(ch, statements, {"provider_message_id": result.provider_message_id})

    def _record(self, step: Record) -> Plan:
        statements = list(self.pending)
        if step.claim.status == "sending":
            statements += claim_status(self.s, step.claim, "unknown", self.now_ms,
                                       error="worker stopped mid-send")
        if step.unknown:
            statements += audit(self.s, "notification.send_unknown", "medium",
                                {"channel": step.channel, "note": "not re-sent: provider has no idempotency key"},
                                self.now_ms)
        return self._billable(step.channel, statements, {"recorded_without_send": True, "unknown": step.unknown})

    def _billable(self, ch: Channel, statements: list[Statement], extra: dict[str, object]) -> Plan:
        cost = cost_of(ch, self.cfg)
        statements += notification_row(self.s, ch, cost, self.now_ms)
        if self.failures:
            statements += audit(self.s, "notification.channel_failed", "medium",
                                {"failed": dict(self.failures), "sent_via": ch}, self.now_ms)
        return Plan(statements=statements, log={"notification_id": self.s.notification_id, "channel": ch,
                                                "cost": cost, "fell_back": bool(self.failures), **extra},
                    not_before=self._planned_wait_end())

    def _planned_wait_end(self) -> datetime | None:
        """A non-urgent message received inside quiet hours waits for their end by design: its
        end-to-end latency is measured from there."""
        received = self.ctx.envelope.received_at
        if received is None or self.event.urgent:
            return None
        until = quiet_until(received, self.cfg)
        return until.astimezone(UTC) if until is not None else None

    def _give_up(self) -> Plan:
        reasons = dict(self.failures)
        reason = "notification_failed: " + "; ".join(f"{ch}: {why}" for ch, why in reasons.items())
        statements = [*self.pending, *audit(self.s, "notification.failed", "high", {"failed": reasons}, self.now_ms),
                      inbox.mark_dead(self.s.event_id, reason, self.ctx.now)]
        return Plan(statements=statements, outcome="dead", log={"notification_id": self.s.notification_id,
                                                                "error": reason})
