"""Order independence and conservation, as a property: any subset of a WhatsApp message's statuses
(sent, delivered, read, a 131026 failure, a rate-limit failure), delivered in any order, with
redeliveries and repeats, with billing closes interleaved anywhere, ends in the same send facts,
charge, notification cost, SMS fallback and audit trail as the natural order delivered once; and
after every close Σ billed notification cost = Σ invoice notification lines.

The fallback decision is order-independent because the fallback waits `SV_FALLBACK_GRACE_S` and
re-checks: here every status is applied before the deferred fallback runs (a `delivered` reported
within the grace of a `failed`). Driven through the production `apply_event` job on a real SQLite
file, real Redis and the fake providers over real sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.money import to_paise
from events import inbox
from events.envelope import Envelope, envelope_for
from events.notifications import NotificationStatusReported, status_dedupe_key
from jobqueue.arq_redis import connect
from store import Database
from store.migrate import migrate
from store.sqlite import SqliteDatabase
from tests.support.billing_seed import close_event
from tests.support.factories import NOW_MS, Tenant, make_tenant
from tests.support.notify_harness import Clock, Harness, make_harness, utc
from tests.support.provider_servers import ProviderServers
from tests.support.status_flow import settle

CONFIG = {"notifications": {"fallback_to_sms": True, "quiet_hours": None},
          "billing": {"included_notification_spend": "0.00"}}
T0 = NOW_MS // 1000 + 60
# (status, seconds after T0, error code): the natural order is by time.
STATUSES = [("sent", 1, None), ("delivered", 3, None), ("failed", 5, "131026"), ("failed", 6, "130429"),
            ("read", 9, None)]
PERIODS = ["2026-09", "2026-10", "2026-11"]


@dataclass(frozen=True)
class Delivery:
    index: int
    how: str  # first | redelivery (the same job again) | repeat (the same status under another key)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], list[Delivery], list[int]]:
    chosen = sorted(draw(st.sets(st.integers(0, len(STATUSES) - 1), min_size=1)))
    extra = draw(st.lists(st.tuples(st.sampled_from(chosen), st.sampled_from(["redelivery", "repeat"])),
                          max_size=4))
    deliveries = draw(st.permutations([Delivery(i, "first") for i in chosen] + [Delivery(i, h) for i, h in extra]))
    closes = sorted(draw(st.lists(st.integers(0, len(deliveries)), max_size=2, unique=True)))
    return chosen, deliveries, closes


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("status-order") / "studiovault.db"


@pytest.fixture
async def h(db_path: Path, redis_url: str, servers: ProviderServers) -> AsyncIterator[Harness]:
    db = await SqliteDatabase.open(db_path)
    await migrate(db)
    client = await connect(redis_url, "test:events")
    async with httpx.AsyncClient() as http:
        yield await make_harness(db, client, http, servers.url, Clock(utc(NOW_MS)))
    await client.aclose()
    await db.close()


def status_envelope(t: Tenant, ntf: str, wamid: str, index: int, suffix: str = "") -> Envelope:
    state, after, code = STATUSES[index]
    event = NotificationStatusReported(
        provider="whatsapp", channel="whatsapp", provider_message_id=wamid, status=state,  # type: ignore[arg-type]
        provider_status=state, occurred_at=datetime.fromtimestamp(T0 + after, UTC), notification_id=ntf,
        error_code=code, error_title="failed" if code else None, billable=None if code else True,
        pricing_category=None if code else "utility")
    key = status_dedupe_key("whatsapp", wamid, state, str(T0 + after), code or "") + suffix
    return envelope_for(event, org_id=t.org_id, branch_id=t.branch_id, dedupe_key=key)


class Run:
    """One tenant's notification, its statuses and closes, on the shared harness."""

    def __init__(self, h: Harness, t: Tenant) -> None:
        self.h, self.t, self.db = h, t, h.deps.db
        self.closed: list[str] = []
        self.ntf = self.wamid = ""

    async def send(self) -> None:
        env = await self.h.publish(self.t)
        assert await self.h.run(env) == "applied"
        self.ntf = str(env.payload["notification_id"])
        rows = await self.db.query("SELECT provider_message_id FROM notification_sends WHERE id = ?",
                                   (f"{self.ntf}/whatsapp",))
        self.wamid = str(rows[0]["provider_message_id"])

    async def status(self, env: Envelope) -> str:
        published = await self.h.deps.publisher.publish(env)
        return "duplicate" if published.duplicate else await self.h.apply(env)

    async def close_next(self) -> None:
        period = PERIODS[len(self.closed)]
        event = close_event(self.t.org_id, period)
        self.h.clock.now = max(self.h.clock.now, event.period_end + timedelta(hours=6))
        env = envelope_for(event, org_id=self.t.org_id, branch_id=None, dedupe_key=f"t:{self.t.org_id}:{period}",
                           occurred_at=self.h.clock.now)
        await self.db.batch([inbox.insert(env, self.h.clock.now)])
        assert await self.h.apply(env) == "applied"
        self.closed.append(period)
        assert await conserved(self.db, self.t)

    async def finish(self) -> None:
        await settle(self.h)
        while len(self.closed) < len(PERIODS):
            await self.close_next()


async def conserved(db: Database, t: Tenant) -> bool:
    """Σ billed notification cost (paise, half up) = Σ the overage invoices' notification lines."""
    billed = await db.query("SELECT cost FROM notifications WHERE branch_id = ? AND billed = 1", (t.branch_id,))
    invoices = await db.query("SELECT tax_json FROM invoices WHERE branch_id = ? AND invoice_type = 'overage'",
                              (t.branch_id,))
    lines = [ln["amount"] for i in invoices for ln in json.loads(str(i["tax_json"]))["lines"]
             if ln["code"] == "notifications"]
    return sum(to_paise(r["cost"]) for r in billed) == sum(to_paise(a) for a in lines)


async def outcome(db: Database, run: Run) -> dict[str, object]:
    facts = await db.query(
        "SELECT progress, sent_at, delivered_at, read_at, failed_at, failure_code, provider_free"
        " FROM notification_deliveries WHERE id = ?", (f"{run.ntf}/whatsapp",))
    charge = await db.query("SELECT channel, state, amount FROM notification_charges WHERE id = ?", (run.ntf,))
    note = await db.query("SELECT channel, cost, billed FROM notifications WHERE id = ?", (run.ntf,))
    sms = await db.query("SELECT status, attempts FROM notification_sends WHERE id = ?", (f"{run.ntf}/sms",))
    audit_types = await db.query("SELECT event_type FROM audit_logs WHERE org_id = ? ORDER BY event_type",
                                 (run.t.org_id,))
    return {"facts": facts, "charge": charge, "notification": note, "sms": sms,
            "audits": [a["event_type"] for a in audit_types]}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
async def test_any_order_of_statuses_and_closes_converges_and_conserves_billing(
    h: Harness, servers: ProviderServers, scenario: tuple[list[int], list[Delivery], list[int]]
) -> None:
    chosen, deliveries, closes = scenario
    h.clock.now = utc(NOW_MS)
    once, shuffled = Run(h, await make_tenant(h.deps.db, org_config=CONFIG)), Run(
        h, await make_tenant(h.deps.db, org_config=CONFIG))
    sms_before = servers.deliveries["sms"]

    await once.send()
    for index in chosen:
        assert await once.status(status_envelope(once.t, once.ntf, once.wamid, index)) == "applied"
    await once.finish()

    h.clock.now = utc(NOW_MS)
    await shuffled.send()
    seen: dict[int, Envelope] = {}
    for n, d in enumerate(deliveries):
        if n in closes:
            await shuffled.close_next()
        if d.how == "redelivery" and d.index in seen:
            assert await h.apply(seen[d.index]) == "duplicate"
            continue
        env = status_envelope(shuffled.t, shuffled.ntf, shuffled.wamid, d.index, f":{n}" if d.how == "repeat" else "")
        assert await shuffled.status(env) in {"applied", "duplicate"}
        seen.setdefault(d.index, env)
    if len(deliveries) in closes:
        await shuffled.close_next()
    await shuffled.finish()

    expected = await outcome(h.deps.db, once)
    assert await outcome(h.deps.db, shuffled) == expected
    assert await conserved(h.deps.db, once.t)
    assert await conserved(h.deps.db, shuffled.t)
    # What the rate card says: WhatsApp when it reached a device, else the SMS a 131026 sent, else nothing.
    reached = bool({1, 4} & set(chosen))
    fell_back = not reached and 2 in chosen
    assert servers.deliveries["sms"] - sms_before == (2 if fell_back else 0)
    note = expected["notification"]
    assert isinstance(note, list)
    want = (("whatsapp", 0.35, 1) if reached else ("sms", 0.25, 1) if fell_back else ("whatsapp", 0.0, 0))
    assert (note[0]["channel"], note[0]["cost"], note[0]["billed"]) == want
