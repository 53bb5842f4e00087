"""Period close producer: one `BillingPeriodClosed` per org when its calendar month ends in its time zone.

The cron runs hourly on the days a month can end somewhere (UTC 28th-2nd) and publishes, for every
org, the last month that has ended in the org's zone; the dedupe key `billing:{org}:{period}` makes
every later run (and every other worker running the same cron, arq issue #196) a no-op. Keys already
in the inbox are skipped with one indexed read per page, so a run that finds nothing to do is cheap.
`studiovault billing close --period 2026-10` publishes any past period the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from config import BillingSettings
from core.clock import epoch_ms
from events.billing import BillingPeriodClosed, billing_dedupe_key
from events.envelope import Envelope, envelope_for
from events.publish import Publisher
from handlers.billing.calendar import last_closed_period, org_timezone, period_bounds
from store import Database, query_in

log = structlog.get_logger("studiovault.billing")


@dataclass
class CloseResult:
    examined: int = 0
    published: int = 0
    already: int = 0  # the dedupe key was in the inbox: published before
    not_ended: int = 0  # the period has not ended in the org's time zone
    too_new: int = 0  # the org was created after the period ended


def close_envelope(org: Mapping[str, Any], now: datetime, period: str | None) -> Envelope | str:
    """The close event for one org (or why there is none): `period`, else its last ended month."""
    try:
        config = json.loads(org.get("config_json") or "{}")
    except json.JSONDecodeError:
        config = {}
    tz = org_timezone(config if isinstance(config, dict) else {})
    chosen = period or last_closed_period(now, tz)
    start, end = period_bounds(chosen, tz)
    if end > now:
        return "not_ended"
    created = org.get("created_at")
    if created is not None and int(created) >= epoch_ms(end):
        return "too_new"
    org_id = str(org["id"])
    event = BillingPeriodClosed(org_id=org_id, period=chosen, period_start=start, period_end=end)
    key = billing_dedupe_key(org_id, chosen)  # also the correlation id: every close of this org and period
    return envelope_for(event, org_id=org_id, branch_id=None, dedupe_key=key, occurred_at=now, correlation_id=key)


async def publish_period_closes(
    db: Database,
    publisher: Publisher,
    now: datetime,
    *,
    period: str | None = None,
    progress: Callable[[int], None] | None = None,
    settings: BillingSettings | None = None,
) -> CloseResult:
    """Publish the close of `period` (None: each org's last ended month) for every org, page by page."""
    settings = settings or BillingSettings()
    result = CloseResult()
    gate = asyncio.Semaphore(settings.billing_publish_concurrency)

    async def publish(envelope: Envelope) -> None:
        async with gate:
            outcome = await publisher.publish(envelope)
        if outcome.duplicate:
            result.already += 1
        else:
            result.published += 1

    after = ""
    while rows := await db.query(
        "SELECT id, config_json, created_at FROM organizations WHERE id > ? ORDER BY id LIMIT ?",
        (after, settings.billing_page_size),
    ):
        planned = [close_envelope(row, now, period) for row in rows]
        envelopes = [p for p in planned if isinstance(p, Envelope)]
        result.not_ended += planned.count("not_ended")
        result.too_new += planned.count("too_new")
        known = {str(r["dedupe_key"]) for r in await query_in(
            db, "SELECT dedupe_key FROM event_inbox WHERE dedupe_key IN ({in})", [e.dedupe_key for e in envelopes])}
        result.already += sum(e.dedupe_key in known for e in envelopes)
        await asyncio.gather(*(publish(e) for e in envelopes if e.dedupe_key not in known))
        result.examined += len(rows)
        if progress:
            progress(len(rows))
        after = str(rows[-1]["id"])
    log.info("billing_closes_published", period=period, examined=result.examined, published=result.published,
             already=result.already, not_ended=result.not_ended, too_new=result.too_new)
    return result
