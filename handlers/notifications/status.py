"""`notification.status_reported` → fold a provider's delivery status into the send it names.

    read the send by provider message id (or by the notification id the provider echoed), its facts,
    charge and the original notification.due, in ONE round trip
    → merge (`delivery.merge`: order-independent) → charge (`delivery.charge_after`) → fallback?
    → Plan: facts insert/update (version-checked), charge + notifications cost, audits, follow-up

Unknown messages. A status can race the send's own batch (Meta posts `sent` within milliseconds of
answering the send, before our unit of work has recorded the message id), so a status naming no
recorded send is retried with backoff for `SV_STATUS_UNKNOWN_GRACE_S` (300 s) after it was received;
after that it is dead-lettered as `unknown_message`, and `studiovault dead replay` applies it once the
send is recorded. A send still 'sending'/'retry' counts as not recorded yet.

Late failure. A WhatsApp `failed` with a fallback-class code (`delivery.FALLBACK_CODES`) for a message
never delivered, in a branch with `fallback_to_sms`, publishes one `notification.fallback_due` (dedupe
key `notify:fallback:<notification id>`, set-once `fallback_at`), `SV_FALLBACK_GRACE_S` later.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from core.clock import epoch_ms
from events.envelope import Envelope, envelope_for
from events.notifications import (
    UNATTRIBUTED_ORG,
    NotificationFallbackDue,
    NotificationStatusReported,
    fallback_dedupe_key,
)
from handlers.base import HandlerContext, NotifyServices, Plan, Rejected, RetryLater
from handlers.notifications.delivery import Charge, Facts, Status, charge_after, merge, wants_fallback
from handlers.notifications.plan import ConfigError, notify_config
from handlers.notifications.records import FACT_COLUMNS, Subject, audit, charge_change, facts_write
from store import Statement

SEND_SQL = (
    "SELECT s.id, s.notification_id, s.channel, s.status AS send_status, s.org_id, s.branch_id, s.event_id,"
    " d.version AS facts_version, " + ", ".join(f"d.{c} AS f_{c}" for c in FACT_COLUMNS) + ","
    " c.channel AS c_channel, c.state AS c_state, c.amount AS c_amount, c.version AS c_version, c.reason AS c_reason,"
    " n.type AS kind, n.project_id, e.payload_json AS due_json, o.config_json,"
    " (SELECT count(*) FROM notification_sends x WHERE x.notification_id = s.notification_id"
    " AND x.channel = 'sms') AS sms_claims"
    " FROM notification_sends s"
    " LEFT JOIN notification_deliveries d ON d.id = s.id"
    " LEFT JOIN notification_charges c ON c.id = s.notification_id"
    " LEFT JOIN notifications n ON n.id = s.notification_id"
    " LEFT JOIN event_inbox e ON e.id = s.event_id"
    " LEFT JOIN organizations o ON o.id = s.org_id"
)
RECORDED = ("sent", "unknown", "failed")  # 'sending' / 'retry': the send's outcome is not recorded yet


async def apply_delivery_status(event: NotificationStatusReported, ctx: HandlerContext) -> Plan:
    services = ctx.services.notify or NotifyServices()
    by_message, by_notification = await ctx.db.query_many([
        Statement(SEND_SQL + " WHERE s.channel = ? AND s.provider_message_id = ?",
                  (event.channel, event.provider_message_id)),
        Statement(SEND_SQL + " WHERE s.id = ?", (f"{event.notification_id or ''}/{event.channel}",)),
    ])
    row = next((r for r in (*by_message, *by_notification) if r["send_status"] in RECORDED), None)
    if row is None:
        return _unknown(event, ctx, services, found=bool(by_message or by_notification))
    env = ctx.envelope
    if env.org_id != UNATTRIBUTED_ORG and (env.org_id, env.branch_id) != (row["org_id"], row["branch_id"]):
        raise Rejected("wrong_tenant", f"{event.provider} message {event.provider_message_id} is not in branch"
                                       f" {env.branch_id}")
    now_ms = epoch_ms(ctx.now)
    before = _facts(row)
    status = Status(event.status, epoch_ms(event.occurred_at), event.error_code, event.error_title, event.billable)
    after = merge(before, status)
    after = after if after.provider_message_id else _with_id(after, event.provider_message_id)
    subject = Subject(str(row["notification_id"]), str(row["kind"] or ""), env.event_id, str(row["org_id"]),
                      str(row["branch_id"]), str(row["project_id"] or ""))
    fallback = wants_fallback(event.channel, after, allowed=_fallback_allowed(row),
                              sms_claimed=int(row["sms_claims"]) > 0)
    if fallback:
        after = _with_fallback(after, now_ms)
    log: dict[str, Any] = {"notification_id": subject.notification_id, "channel": event.channel,
                           "status": after.derived_status, "reported": event.provider_status}
    if after == before:
        return Plan(outcome="applied", log={**log, "change": "none"})
    statements = facts_write(str(row["id"]), subject.notification_id, event.channel, after, now_ms=now_ms,
                             version=None if row["facts_version"] is None else int(row["facts_version"]))
    charge = _charge(row)
    moved = charge_after(charge, event.channel, after, services.billable_on)
    if charge is not None and moved is not None:
        statements += charge_change(subject.notification_id, charge, moved, now_ms)
        log |= {"charge": moved.state}
        if moved.state == "billable" and charge.state != "billable":
            log["billed_cost"] = moved.amount  # what this status made billable (the cost metric counts it)
    if after.failed_at is not None and before.failed_at is None:
        statements += audit(subject, "notification.delivery_failed", "medium", {
            "channel": event.channel, "provider_message_id": event.provider_message_id,
            "code": after.failure_code, "reason": after.failure_reason, "status_after": after.derived_status,
            "fallback": "sms_requested" if fallback else "none"}, now_ms)
    follow_ups = [_fallback_event(row, subject, after, ctx, services)] if fallback else []
    return Plan(statements=statements, follow_ups=follow_ups, log={**log, "fallback": fallback})


def _unknown(event: NotificationStatusReported, ctx: HandlerContext, services: NotifyServices, *,
             found: bool) -> Plan:
    age = (ctx.now - ctx.envelope.occurred_at).total_seconds()
    what = (f"{event.provider} message {event.provider_message_id}"
            + (f" (notification {event.notification_id})" if event.notification_id else ""))
    detail = f"{what} {'is still being sent' if found else 'names no recorded send'}"
    if age < services.status_unknown_grace_s:
        raise RetryLater(f"unknown_message: {detail}; retrying for {services.status_unknown_grace_s:.0f} s",
                         services.status_unknown_grace_s / 5)
    raise Rejected("unknown_message", f"{detail} after {age:.0f} s; replay once the send is recorded")


def _facts(row: dict[str, Any]) -> Facts:
    if row["facts_version"] is None:
        return Facts()
    values = {c: row[f"f_{c}"] for c in FACT_COLUMNS}
    values["progress"] = int(values["progress"] or 0)
    values["provider_free"] = bool(values["provider_free"])
    for column in ("sent_at", "delivered_at", "read_at", "failed_at", "fallback_at"):
        values[column] = None if values[column] is None else int(values[column])
    return Facts(**values)


def _with_id(facts: Facts, provider_message_id: str) -> Facts:
    return dataclasses.replace(facts, provider_message_id=provider_message_id)


def _with_fallback(facts: Facts, now_ms: int) -> Facts:
    return dataclasses.replace(facts, fallback_at=now_ms)


def _charge(row: dict[str, Any]) -> Charge | None:
    if row["c_state"] is None:
        return None  # a notification recorded before charges existed: billed as it was recorded
    return Charge(row["c_channel"], str(row["c_state"]), float(row["c_amount"]), int(row["c_version"]),
                  row["c_reason"])


def _due(row: dict[str, Any]) -> dict[str, Any]:
    """The payload of the notification.due that claimed the send (kind, project, invoice, urgent)."""
    try:
        envelope = json.loads(str(row["due_json"])) if row["due_json"] else {}
    except ValueError:
        return {}
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    return payload if isinstance(payload, dict) else {}


def _fallback_allowed(row: dict[str, Any]) -> bool:
    try:
        cfg = notify_config(None if row["config_json"] is None else str(row["config_json"]), str(row["branch_id"]))
    except ConfigError:
        return False
    return cfg.fallback_to_sms and bool(_due(row).get("project_id"))


def _fallback_event(row: dict[str, Any], s: Subject, facts: Facts, ctx: HandlerContext,
                    services: NotifyServices) -> Envelope:
    due = _due(row)
    event = NotificationFallbackDue(
        notification_id=s.notification_id, kind=str(due.get("kind") or s.kind), project_id=str(due["project_id"]),
        invoice_id=due.get("invoice_id"), urgent=bool(due.get("urgent", False)), failed_channel="whatsapp",
        reason=f"whatsapp_{facts.failure_code}: {facts.failure_reason or 'failed after sending'}"[:500])
    return envelope_for(event, org_id=s.org_id, branch_id=s.branch_id,
                        dedupe_key=fallback_dedupe_key(s.notification_id), occurred_at=ctx.now,
                        available_at=ctx.now + timedelta(seconds=services.fallback_grace_s))
