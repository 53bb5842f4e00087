"""Pure decisions about provider delivery statuses: merging them into a send's facts, whether a late
failure falls back to SMS, and what the notification's charge becomes. No I/O; table- and
property-tested in tests/unit/test_notifications_delivery.py.

Order independence: a send's facts are a join-semilattice. Every field merges monotonically (max of
progress, earliest time, earliest failure by (time, code), OR of "not charged"), so the same statuses
in any order, any number of times, give the same facts. `sent` after `delivered` and `delivered` after
`read` change nothing; `read` implies delivered (Meta skips `delivered` for a message read at once); a
failure after delivered/read (several devices) is recorded but the send stays delivered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from events.notifications import Channel, DeliveryStatus

BillableMoment = Literal["accepted", "delivered"]
PROGRESS: dict[DeliveryStatus, int] = {"sent": 2, "delivered": 3, "read": 4}
DELIVERED = 3

# WhatsApp failure codes (statuses[].errors[].code) after which the SMS fallback is sent: the failure is
# about this recipient on WhatsApp (131026 undeliverable, 131047 outside the 24 h window, 131049
# ecosystem cap, 130472 experiment, 131050 marketing opt-out — our kinds are all utility), about our
# ability to send WhatsApp at all (template 132000-132016, media 131051/131053, account/payment 131042,
# 131031, 368), or unknown/transient on Meta's side (1, 2, 131000, 131016: Meta will not retry a failed
# message, so SMS is the only way it arrives). Rate limits (130429, 131056, 131048) are not: throttling
# says "slow down", not "this recipient cannot be reached"; they are audited without a fallback.
FALLBACK_CODES = frozenset({
    "131026", "131047", "131049", "130472", "131050", "131051", "131053", "131042", "131031", "368",
    "1", "2", "131000", "131016", *(str(code) for code in range(132000, 132017)),
})


@dataclass(frozen=True)
class Status:
    """One reported status, normalised (the event's facts, times in ms since the epoch)."""

    status: DeliveryStatus
    at_ms: int
    error_code: str | None = None
    error_title: str | None = None
    billable: bool | None = None


@dataclass(frozen=True)
class Facts:
    """A `notification_deliveries` row: everything the provider said about one send."""

    provider_message_id: str | None = None
    progress: int = 0
    sent_at: int | None = None
    delivered_at: int | None = None
    read_at: int | None = None
    failed_at: int | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    provider_free: bool = False
    fallback_at: int | None = None

    @property
    def delivered(self) -> bool:
        return self.progress >= DELIVERED

    @property
    def failed(self) -> bool:
        """Failed and never delivered: a failure reported after delivered/read does not count."""
        return self.failed_at is not None and not self.delivered

    @property
    def derived_status(self) -> str:
        if self.progress >= 4:
            return "read"
        if self.delivered:
            return "delivered"
        if self.failed_at is not None:
            return "failed"
        return "sent" if self.progress >= 2 else "accepted"


def _earliest(current: int | None, new: int) -> int:
    return new if current is None else min(current, new)


def merge(facts: Facts, s: Status) -> Facts:
    """`facts` with `s` folded in (commutative, associative, idempotent)."""
    changes: dict[str, Any] = {}
    if s.status in PROGRESS:
        changes["progress"] = max(facts.progress, PROGRESS[s.status])
        column = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at"}[s.status]
        changes[column] = _earliest(getattr(facts, column), s.at_ms)
    if s.status == "failed":
        new = (s.at_ms, s.error_code or "")
        if facts.failed_at is None or new < (facts.failed_at, facts.failure_code or ""):
            changes |= {"failed_at": s.at_ms, "failure_code": s.error_code, "failure_reason": s.error_title}
        elif new == (facts.failed_at, facts.failure_code or "") and (s.error_title or "") > (
                facts.failure_reason or ""):
            changes["failure_reason"] = s.error_title  # the same failure twice with another text: keep one
    if s.billable is False:
        changes["provider_free"] = True
    return dataclasses.replace(facts, **changes) if changes else facts


def wants_fallback(channel: Channel, facts: Facts, *, allowed: bool, sms_claimed: bool) -> bool:
    """A late WhatsApp failure with a fallback-class code, never delivered, fallback allowed by the branch,
    no SMS sent or claimed for the notification yet, and not asked for before."""
    return (channel == "whatsapp" and allowed and not sms_claimed and facts.failed and facts.fallback_at is None
            and (facts.failure_code or "") in FALLBACK_CODES)


# --- the notification's charge ------------------------------------------------------------------------

@dataclass(frozen=True)
class Charge:
    """A `notification_charges` row."""

    channel: Channel
    state: str  # pending | billable | void
    amount: float
    version: int = 1
    reason: str | None = None


def initial_state(moment: BillableMoment) -> str:
    """A send the provider accepted: billable now for an "accepted" channel, else pending its delivery."""
    return "billable" if moment == "accepted" else "pending"


def charge_after(charge: Charge | None, channel: Channel, facts: Facts,
                 billable_on: Mapping[str, BillableMoment]) -> Charge | None:
    """The charge once `channel`'s send has `facts`, or None when it does not change. A billable charge
    never changes again; a charge follows only the send it is for (the fallback's, once there is one)."""
    if charge is None or charge.state == "billable" or charge.channel != channel:
        return None
    moment = billable_on.get(channel, "accepted")
    reached = moment == "accepted" or facts.delivered
    if reached and facts.provider_free:
        return None if charge.state == "void" else dataclasses.replace(charge, state="void",
                                                                       reason="not charged by the provider")
    if reached:
        return dataclasses.replace(charge, state="billable", reason=f"{channel} {facts.derived_status}")
    if facts.failed and charge.state == "pending":
        return dataclasses.replace(charge, state="void", reason=f"{channel} failed: {facts.failure_code}")
    return None
