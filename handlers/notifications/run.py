"""One attempt at one notification: walk its channel chain, at most one request per channel, and plan
what to record (see `handlers.notifications.handler` for the delivery semantics). On the event's last
attempt (`SV_MAX_ATTEMPTS`) a provider still answering "not now" counts as that channel failing: the
SMS fallback is tried, or the notification is audited as failed and dead-lettered by the plan.

Failures are read from the recorded claims, not kept per attempt: a channel refused in an earlier
attempt (its claim is 'failed') is audited when a later attempt sends through the next channel, e.g.
WhatsApp refused, then the fallback SMS answered 500 and, retried, 200.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from core.clock import epoch_ms
from core.parse import json_object
from events import inbox
from events.notifications import Channel
from handlers.base import Defer, HandlerContext, NotifyServices, Plan, RetryLater
from handlers.notifications.delivery import Charge, initial_state
from handlers.notifications.phones import InvalidPhone, to_e164
from handlers.notifications.plan import (
    Claim,
    GiveUp,
    NotifyConfig,
    Record,
    Send,
    cost_of,
    is_replay,
    next_step,
    quiet_until,
)
from handlers.notifications.records import (
    Subject,
    audit,
    charge_change,
    claim_again,
    claim_new,
    failed_without_request,
    notification_row,
)
from handlers.notifications.records import set_status as claim_status
from handlers.notifications.templates import Facts, render
from providers.port import OutboundMessage, SendRejected, SendResult, SendRetryable
from store import Statement

log = structlog.get_logger("studiovault.notifications")


@dataclass(frozen=True)
class Fallback:
    """This run is the SMS fallback of a send that failed after it was accepted."""

    failed_channel: Channel
    reason: str


@dataclass
class Loaded:
    """What the handler read and checked, for one run."""

    subject: Subject
    cfg: NotifyConfig
    facts: Facts
    row: dict[str, object]
    region: str
    claims: dict[Channel, Claim] = field(default_factory=dict)
    charge: Charge | None = None
    last_try: bool = False  # this attempt is the event's last before the failure budget is spent
    window_passed: bool = False  # ... and the event is older than the provider retry window (24 h)


class SendRun:
    def __init__(self, ctx: HandlerContext, services: NotifyServices, loaded: Loaded, chain: tuple[Channel, ...],
                 *, urgent: bool, fallback: Fallback | None = None) -> None:
        self.ctx, self.services, self.loaded, self.chain = ctx, services, loaded, chain
        self.s, self.cfg, self.claims = loaded.subject, loaded.cfg, loaded.claims
        self.urgent, self.fallback = urgent, fallback
        self.now_ms = epoch_ms(ctx.now)
        self.replay = is_replay(chain, self.claims)
        self.failed_now: set[Channel] = set()
        self.pending: list[Statement] = []  # failures to record with the next batch
        self.result = SendResult(None)

    async def dispatch(self) -> Plan:
        gated = False
        while True:
            step = next_step(self.chain, self.claims, frozenset(self.failed_now), self.replay)
            if isinstance(step, Record):
                return self._record(step)
            if isinstance(step, GiveUp):
                return self._give_up()
            resuming = step.existing is not None and step.existing.status == "sending"
            if not gated and not resuming:
                await self._gate()
                gated = True
            await self._attempt(step)
            if step.channel not in self.failed_now:
                return self._sent(step.channel)

    async def _gate(self) -> None:
        """Quiet hours (non-urgent only), then the branch's send cap: not now → Defer."""
        if not self.urgent:
            until = quiet_until(self.ctx.now, self.cfg)
            if until is not None:
                raise Defer(until.astimezone(UTC), "quiet_hours")
        if self.services.limiter is not None:
            until = await self.services.limiter.acquire(f"branch:{self.s.branch_id}", self.ctx.now,
                                                        self.cfg.rate_per_minute)
            if until is not None:
                raise Defer(until, "branch_rate_cap")

    async def _attempt(self, step: Send) -> None:
        """Claim, send once, and leave the outcome in `self.claims` / `self.failed_now`."""
        ch = step.channel
        sender = self.services.senders.get(ch)
        try:
            to = self._recipient(ch)
        except InvalidPhone as exc:  # checked before any provider is called: permanent, audited
            self._fail(ch, step.existing, f"invalid_phone: {exc}")
            return
        if sender is None or to is None:
            self._fail(ch, step.existing, "channel_not_configured" if sender is None else "no_recipient")
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
            if self._out_of_retries(ch):  # a failure of this channel: fall back, or audit and die
                reason = f"retries_exhausted: {exc.reason}"
                self._failed(ch, held, reason, claim_status(self.s, held, "failed", self.now_ms, error=reason))
                return
            await self.ctx.db.batch(claim_status(self.s, held, "retry", self.now_ms, error=exc.reason))
            raise RetryLater(exc.reason, exc.retry_after_s or 0.0) from exc
        except SendRejected as exc:
            self._failed(ch, held, exc.reason, claim_status(self.s, held, "failed", self.now_ms, error=exc.reason))
            return
        self.result = result

    def _out_of_retries(self, ch: Channel) -> bool:
        """The failure budget is spent: fall back to the next channel at once; but the last channel is
        given up on only once the provider retry window has passed (an outage parks nothing sooner)."""
        return self.loaded.last_try and (self.loaded.window_passed or ch != self.chain[-1])

    def _fail(self, ch: Channel, existing: Claim | None, reason: str) -> None:
        """A channel that failed before any request (no recipient, invalid number, not configured)."""
        self._failed(ch, existing, reason, failed_without_request(self.s, ch, existing, reason, self.now_ms))

    def _failed(self, ch: Channel, before: Claim | None, reason: str, statements: list[Statement]) -> None:
        self.failed_now.add(ch)
        self.claims[ch] = Claim(ch, "failed", before.version + 1 if before else 1, None, reason[:500])
        self.pending.extend(statements)
        log.warning("notification_channel_failed", notification_id=self.s.notification_id, channel=ch, error=reason)

    def _recipient(self, ch: Channel) -> str | None:
        if ch == "email":
            email = json_object(self.loaded.row["profile_json"]).get("email")
            return str(email) if email and "@" in str(email) else None
        return to_e164(str(self.loaded.row["phone"] or ""), self.loaded.region)

    def _message(self, ch: Channel, to: str) -> OutboundMessage:
        r = render(self.s.kind, self.loaded.facts, ch)
        return OutboundMessage(ch, to, self.s.kind, r.params, self.s.notification_id, self.s.claim_id(ch),
                               r.subject, r.text, r.html)

    def _failures(self, before: Channel | None = None) -> dict[str, str]:
        """The chain's channels recorded 'failed' (this attempt or an earlier one), up to `before`."""
        chain = self.chain[: self.chain.index(before)] if before in self.chain else self.chain
        return {ch: str(self.claims[ch].last_error or "failed") for ch in chain
                if ch in self.claims and self.claims[ch].status == "failed"}

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
        moment = self.services.billable_on.get(ch, "accepted")
        state = initial_state(moment)
        charge = Charge(ch, state, cost_of(ch, self.cfg), reason=f"{ch} accepted" if state == "billable" else None)
        failures = self._failures(before=ch)
        billed = charge.amount if state == "billable" else 0.0  # what this send makes billable (the cost metric)
        if self.fallback is None:
            statements += notification_row(self.s, charge, self.now_ms)
            if failures:
                statements += audit(self.s, "notification.channel_failed", "medium",
                                    {"failed": failures, "sent_via": ch}, self.now_ms)
        else:
            old = self.loaded.charge
            if old is not None and old.state != "billable":  # else: the first billable send keeps the charge
                statements += charge_change(self.s.notification_id, old, charge, self.now_ms)
            else:
                billed = 0.0
            statements += audit(self.s, "notification.fallback_sent", "medium",
                                {"failed": {self.fallback.failed_channel: self.fallback.reason, **failures},
                                 "sent_via": ch, "late_failure": True}, self.now_ms)
        return Plan(statements=statements, log={"notification_id": self.s.notification_id, "channel": ch,
                                                "cost": billed,
                                                "billable": moment, "fell_back": bool(failures) or bool(self.fallback),
                                                **extra},
                    not_before=self._planned_wait_end())

    def _planned_wait_end(self) -> datetime | None:
        """A non-urgent message received inside quiet hours waits for their end by design: its
        end-to-end latency is measured from there."""
        received = self.ctx.envelope.received_at
        if received is None or self.urgent:
            return None
        until = quiet_until(received, self.cfg)
        return until.astimezone(UTC) if until is not None else None

    def _give_up(self) -> Plan:
        reasons = self._failures()
        if self.fallback is not None:
            reasons = {self.fallback.failed_channel: self.fallback.reason, **reasons}
        reason = "notification_failed: " + "; ".join(f"{ch}: {why}" for ch, why in reasons.items())
        statements = [*self.pending, *audit(self.s, "notification.failed", "high", {"failed": reasons}, self.now_ms),
                      inbox.mark_dead(self.s.event_id, reason, self.ctx.now)]
        return Plan(statements=statements, outcome="dead", log={"notification_id": self.s.notification_id,
                                                                "error": reason})


