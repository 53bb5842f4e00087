"""Billing events: a calendar month ended for an org (published by `producers.billing_close`, the cron and
`studiovault billing close`); applied by `handlers.billing`, which issues the org's overage invoice."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from events.envelope import Event
from events.ids import OrgId


class BillingPeriodClosed(Event):
    """Billing period `period` (a calendar month in the org's time zone) ended for `org_id`:
    `[period_start, period_end)`, local midnights carrying the org's UTC offset."""

    event_type = "billing.period_closed"
    org_id: OrgId
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    period_start: AwareDatetime
    period_end: AwareDatetime

    def lock_key(self) -> str | None:
        return self.org_id  # one biller per org at a time within a worker; the database covers the rest


def billing_dedupe_key(org_id: str, period: str) -> str:
    """One close per org and period, however many times the cron or the CLI publishes it."""
    return f"billing:{org_id}:{period}"
