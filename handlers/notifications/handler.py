"""`notification.due` → send the message through its channel's provider, record it for billing; and
`notification.fallback_due` → the SMS fallback of a WhatsApp message reported failed after it was sent.

    read (one round trip) → checks → [quiet hours / rate cap → Defer] → for each channel in the chain:
        claim batch ('sending') → ONE provider request → outcome
    → Plan: claim 'sent' + `notifications` row and its charge + audits, with the inbox update

Delivery semantics. The unit of work commits after the handler returns, so a send could be repeated
by a retry after a crash. The claim, committed in its own small batch just before the request, closes
that: a retry that finds the claim 'sent'/'unknown' records and never sends; one that finds it
'sending' (the worker died between the request and the unit's batch: the only window, as long as one
request plus one batch) re-sends e-mail with the same Idempotency-Key, and for WhatsApp and SMS (no
idempotency key) records the send as 'unknown' with an audit row instead of sending again: at most
once there, because the request almost certainly went out (the claim commits microseconds before
it). A provider's "not now" (429, 5xx, timeout) releases the claim ('retry') and retries honouring
Retry-After; a permanent refusal (or a phone number that is not valid E.164, checked before any
request) marks it 'failed' and falls back to SMS when the branch allows; when every channel failed,
the plan writes an audit row and marks the event dead itself (a `Rejected` would write nothing), so
`studiovault dead replay` can retry it after a fix.

Billing. The `notifications` row is written when the provider accepts the message, with a charge
(`notification_charges`): billable at once for a channel billed on acceptance (SMS, e-mail by
default), else pending until a status webhook says delivered (WhatsApp). Its `cost` is the rate-card
price once billable, 0 before; `handlers.notifications.status` moves it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.clock import epoch_ms
from core.money import to_paise
from core.parse import json_object
from events.notifications import NotificationDue, NotificationFallbackDue
from handlers.base import HandlerContext, NotifyServices, Plan, Rejected
from handlers.notifications.delivery import Charge
from handlers.notifications.phones import default_region
from handlers.notifications.plan import Claim, ConfigError, NotifyConfig, channel_chain, notify_config
from handlers.notifications.records import Subject
from handlers.notifications.run import Fallback, Loaded, SendRun
from handlers.notifications.templates import TEMPLATES, Facts
from store import Statement

PROJECT_SQL = (
    "SELECT p.branch_id, p.details_json, c.branch_id AS client_branch_id, c.name AS client_name, c.phone,"
    " c.profile_json, b.org_id, b.name AS branch_name, b.invoice_prefix, b.address_json, b.tax_json,"
    " o.name AS org_name, o.config_json"
    " FROM projects p JOIN clients c ON c.id = p.client_id JOIN branches b ON b.id = p.branch_id"
    " JOIN organizations o ON o.id = b.org_id WHERE p.id = ?"
)


async def dispatch_notification(event: NotificationDue, ctx: HandlerContext) -> Plan:
    services = _services(ctx)
    loaded, existing, invoice = await _load(event.notification_id, event.kind, event.project_id, event.invoice_id,
                                            ctx)
    if existing:
        return Plan(outcome="ignored", log={"reason": "already_recorded", "channel": existing[0]["channel"]})
    if invoice and invoice["status"] not in ("issued", "overdue") and event.kind == "invoice_due":
        return Plan(outcome="ignored", log={"reason": f"invoice_{invoice['status']}"})
    run = SendRun(ctx, services, loaded, channel_chain(event.channel, loaded.cfg), urgent=event.urgent)
    return await run.dispatch()


async def send_fallback(event: NotificationFallbackDue, ctx: HandlerContext) -> Plan:
    """SMS for a notification whose WhatsApp message failed after it was accepted, unless it was delivered
    after all (a `delivered` can follow a `failed` from another device), or the branch turned fallback off."""
    services = _services(ctx)
    loaded, existing, invoice = await _load(event.notification_id, event.kind, event.project_id, event.invoice_id,
                                            ctx)
    if not existing:
        raise Rejected("unknown_notification", f"{event.notification_id} has no recorded send to fall back from")
    progress = await ctx.db.query("SELECT progress FROM notification_deliveries WHERE id = ?",
                                  (loaded.subject.claim_id(event.failed_channel),))
    if progress and int(progress[0]["progress"]) >= 3:
        return Plan(outcome="ignored", log={"reason": f"{event.failed_channel}_delivered_after_all"})
    if not loaded.cfg.fallback_to_sms:
        return Plan(outcome="ignored", log={"reason": "fallback_disabled"})
    if invoice and invoice["status"] not in ("issued", "overdue") and event.kind == "invoice_due":
        return Plan(outcome="ignored", log={"reason": f"invoice_{invoice['status']}"})
    run = SendRun(ctx, services, loaded, ("sms",), urgent=event.urgent,
                  fallback=Fallback(event.failed_channel, event.reason))
    return await run.dispatch()


def _services(ctx: HandlerContext) -> NotifyServices:
    if ctx.services.notify is None:
        raise Rejected("notifications_not_configured", "the worker has no notification senders")
    return ctx.services.notify


async def _load(notification_id: str, kind: str, project_id: str, invoice_id: str | None,
                ctx: HandlerContext) -> tuple[Loaded, list[dict[str, object]], dict[str, object] | None]:
    """One read round trip and the checks every run needs: (loaded, the notifications row, the invoice)."""
    project, invoice, existing, claim_rows, charge_rows, tries = await ctx.db.query_many([
        Statement(PROJECT_SQL, (project_id,)),
        Statement("SELECT branch_id, project_id, amount_total, status, due_at FROM invoices WHERE id = ?",
                  (invoice_id or "",)),
        Statement("SELECT channel, billed FROM notifications WHERE id = ?", (notification_id,)),
        Statement("SELECT channel, status, version, provider_message_id, last_error FROM notification_sends"
                  " WHERE notification_id = ?", (notification_id,)),
        Statement("SELECT channel, state, amount, version, reason FROM notification_charges WHERE id = ?",
                  (notification_id,)),
        Statement("SELECT attempts, created_at FROM event_inbox WHERE id = ?", (ctx.envelope.event_id,)),
    ])
    row = _check_tenant(project_id, invoice_id, ctx, project, invoice)
    try:
        cfg = notify_config(_text(row["config_json"]), str(row["branch_id"]), _services(ctx).rate_per_minute)
    except ConfigError as exc:
        raise Rejected("bad_notification_config", str(exc)) from exc
    template = TEMPLATES.get(kind)
    if template is None:
        raise Rejected("unknown_notification_kind", f"no template for {kind!r}")
    if template.needs_invoice and not invoice:
        raise Rejected("invoice_required", f"{kind} names no invoice")
    subject = Subject(notification_id, kind, ctx.envelope.event_id, str(row["org_id"]), str(row["branch_id"]),
                      project_id)
    claims = {r["channel"]: Claim(r["channel"], r["status"], int(r["version"]), r["provider_message_id"],
                                  r["last_error"]) for r in claim_rows}
    charge = Charge(charge_rows[0]["channel"], str(charge_rows[0]["state"]), float(charge_rows[0]["amount"]),
                    int(charge_rows[0]["version"]), charge_rows[0]["reason"]) if charge_rows else None
    inv = invoice[0] if invoice else None
    region = default_region(_text(row["address_json"]), _text(row["tax_json"]), _text(row["config_json"]))
    failures = int(tries[0]["attempts"]) if tries else 0
    age_s = (epoch_ms(ctx.now) - int(tries[0]["created_at"])) / 1000 if tries else 0.0
    loaded = Loaded(subject, cfg, _facts(row, inv, cfg, invoice_id), row, region, claims, charge,
                    last_try=failures + 1 >= _services(ctx).max_attempts,
                    window_passed=age_s >= _services(ctx).provider_retry_window_s)
    return loaded, existing, inv


def _check_tenant(project_id: str, invoice_id: str | None, ctx: HandlerContext, project: list[dict[str, object]],
                  invoice: list[dict[str, object]]) -> dict[str, object]:
    if not project:
        raise Rejected("unknown_project", project_id)
    row = project[0]
    env = ctx.envelope
    if row["org_id"] != env.org_id or row["branch_id"] != env.branch_id or row["client_branch_id"] != row["branch_id"]:
        raise Rejected("wrong_tenant", f"project {project_id} is not in branch {env.branch_id}")
    if invoice_id and not invoice:
        raise Rejected("unknown_invoice", invoice_id)
    if invoice and (invoice[0]["branch_id"] != env.branch_id or invoice[0]["project_id"] not in (None, project_id)):
        raise Rejected("wrong_tenant", f"invoice {invoice_id} is not this project's")
    return row


def _facts(row: dict[str, object], invoice: dict[str, object] | None, cfg: NotifyConfig,
           invoice_id: str | None) -> Facts:
    details = json_object(row["details_json"])
    title = str(details.get("title") or details.get("name") or "your shoot")
    due = invoice["due_at"] if invoice else None
    return Facts(
        client_name=str(row["client_name"]), studio_name=str(row["org_name"]), branch_name=str(row["branch_name"]),
        project_title=title,
        invoice_ref=f"{row['invoice_prefix'] or ''}{invoice_id[-8:].upper()}" if invoice_id else "",
        amount_paise=to_paise(str(invoice["amount_total"])) if invoice else None,
        due_at=datetime.fromtimestamp(int(str(due)) / 1000, UTC) if due is not None else None,
        timezone=cfg.timezone,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)



