"""Pickup latency of events other producers write straight into the inbox (issue 15): the feed poller.

D1 (the real path): `outbox/test/serve.mjs` runs the test app Worker (Drizzle on D1, `@studiovault/outbox`)
and the D1 bridge on one database under miniflare. The app creates a project and its `notification.due`
in ONE batch (`POST /projects`), paced; half of the events carry a three-day-old UUIDv7 (a desktop that
synced late). One worker (production settings and routing table, in this process, fake WhatsApp over
loopback) polls the feed every 0.25 s. Per event:

- commit → enqueued: the app's answer arrived (its batch committed before) → the feed poller's enqueue
  returned (a recording wrapper around the worker's queue);
- commit → applied: → the worker's batch that marked it applied returned (a recording wrapper around
  the worker's database).

Baseline, same run, same database and handler: the Python `Publisher` (inbox write, then its own
enqueue) → applied. Then the inbox and the feed get 100,000 more rows each (already applied / already
behind the cursor, as an unpruned day would leave them) and the app's events are measured again, with
the time of one poll query (`POLL_SQL`, through the bridge) before and after. The same on SQLite, where
the "app" is a second connection writing an outbox-style row with its domain row in one batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uuid_utils

from bench.core import NotAvailable, Run, percentile
from events import inbox
from events.envelope import envelope_for
from events.ids import new_id
from events.notifications import NotificationDue, notification_dedupe_key
from producers.inbox_feed import POLL_SQL
from store import Database, Statement
from workers.deps import Deps

PACE_S = 0.1  # one app event every 100 ms
SEED_SQL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    "INSERT INTO event_inbox (id, type, schema_version, org_id, branch_id, dedupe_key, payload_json, status,"
    " occurred_at, created_at, available_at, updated_at, applied_at, producer, self_enqueued)"
    " SELECT 'evt_seed_' || ? || '_' || i, 'notification.due', 1, 'org_seed', 'brn_seed', 'seed:' || ? || ':' || i,"
    " '{}', 'applied', ?, ?, ?, ?, ?, 'app', 0 FROM n"
)
SEED_FEED_SQL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    "INSERT INTO inbox_feed (event_id, created_at) SELECT 'evt_seed_' || ? || '_' || i, ? FROM n"
)


class Recorder:
    """When each event was enqueued (by anyone through this queue) and when its applied batch returned."""

    def __init__(self) -> None:
        self.enqueued: dict[str, float] = {}
        self.applied: dict[str, float] = {}

    def wrap(self, deps: Deps) -> Deps:
        return dataclasses.replace(deps, db=_TimedDb(deps.db, self), queue=_TimedQueue(deps.queue, self))


class _TimedQueue:
    def __init__(self, inner: Any, rec: Recorder) -> None:
        self.inner, self.rec = inner, rec

    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        accepted = bool(await self.inner.enqueue(envelope_json, event_id, defer_until))
        if accepted:
            self.rec.enqueued.setdefault(event_id, time.time())
        return accepted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _TimedDb:
    def __init__(self, inner: Any, rec: Recorder) -> None:
        self.inner, self.rec = inner, rec

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        changes: list[int] = await self.inner.batch(statements)
        done = time.time()
        for sql, params in statements:
            if sql.startswith("UPDATE event_inbox SET status = ?, applied_at"):
                self.rec.applied.setdefault(str(params[-1]), done)
        return changes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def uuidv7_days_ago(days: float) -> str:
    then = datetime.now(UTC) - timedelta(days=days)
    return str(uuid_utils.uuid7(nanoseconds=int(then.timestamp() * 1000) * 1_000_000))


@dataclasses.dataclass
class Sample:
    committed: dict[str, float] = dataclasses.field(default_factory=dict)
    old_ids: set[str] = dataclasses.field(default_factory=set)


async def wait_applied(rec: Recorder, ids: Sequence[str], within: float) -> None:
    deadline = time.monotonic() + within
    while any(i not in rec.applied for i in ids):
        if time.monotonic() > deadline:
            missing = [i for i in ids if i not in rec.applied]
            raise TimeoutError(f"{len(missing)} of {len(ids)} events not applied after {within:.0f} s")
        await asyncio.sleep(0.02)


def record_latencies(run: Run, key: str, label: str, sample: Sample, rec: Recorder) -> dict[str, Any]:
    """p50/p99/max of commit → enqueued and commit → applied, in ms; old-id events separately."""
    ids = list(sample.committed)
    enq = [(rec.enqueued[i] - sample.committed[i]) * 1000 for i in ids if i in rec.enqueued]
    app = [(rec.applied[i] - sample.committed[i]) * 1000 for i in ids]
    old = [(rec.enqueued[i] - sample.committed[i]) * 1000 for i in ids if i in sample.old_ids and i in rec.enqueued]
    figures = {"events": len(ids), "enqueued_p50_ms": percentile(enq, 50), "enqueued_p99_ms": percentile(enq, 99),
               "enqueued_max_ms": max(enq, default=None), "applied_p50_ms": percentile(app, 50),
               "applied_p99_ms": percentile(app, 99), "old_id_enqueued_p99_ms": percentile(old, 99)}
    if enq:
        run.record(f"{key}.enqueued_p50_ms", f"{label}: commit → enqueued p50", figures["enqueued_p50_ms"], "ms")
        run.record(f"{key}.enqueued_p99_ms", f"{label}: commit → enqueued p99", figures["enqueued_p99_ms"], "ms",
                   f"{len(enq)} events, max {figures['enqueued_max_ms']:.0f} ms")
    if old:
        run.record(f"{key}.old_id_enqueued_p99_ms", f"{label}: 3-day-old UUIDv7s, commit → enqueued p99",
                   figures["old_id_enqueued_p99_ms"], "ms", f"{len(old)} events")
    run.record(f"{key}.applied_p50_ms", f"{label}: commit → applied p50", figures["applied_p50_ms"], "ms")
    run.record(f"{key}.applied_p99_ms", f"{label}: commit → applied p99", figures["applied_p99_ms"], "ms")
    return figures


async def poll_query_ms(db: Database, repeats: int = 60) -> tuple[float, float]:
    """Median time of one feed poll query past the end of the feed (the steady state), and of `SELECT 1`
    interleaved with it: the same round trip with no work, this moment's baseline on a noisy machine."""
    (top,) = await db.query("SELECT coalesce(max(seq), 0) AS seq FROM inbox_feed")
    polls, pings = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        await db.query(POLL_SQL, (int(top["seq"]), 500))
        polls.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await db.query("SELECT 1 AS ok")
        pings.append((time.perf_counter() - started) * 1000)
    return float(percentile(polls, 50) or 0.0), float(percentile(pings, 50) or 0.0)


async def grow_inbox(db: Database, rows: int, tag: str) -> float:
    """`rows` applied inbox rows and as many feed rows, in two statements; seconds taken."""
    started = time.perf_counter()
    now = int(time.time() * 1000)
    for start in range(0, rows, 50_000):  # under D1's 30 s per request
        size = min(50_000, rows - start)
        part = f"{tag}{start}"
        await db.batch([Statement(SEED_SQL, (size, part, part, now, now, now, now, now)),
                        Statement(SEED_FEED_SQL, (size, part, now))])
    return time.perf_counter() - started


async def publisher_baseline(deps_publisher: Any, tenant: Any, rec: Recorder, n: int) -> Sample:
    sample = Sample()
    for _ in range(n):
        project = tenant.project_id
        event = NotificationDue(notification_id=new_id("ntf"), kind="booking_confirmed", project_id=project)
        env = envelope_for(event, org_id=tenant.org_id, branch_id=tenant.branch_id,
                           dedupe_key=notification_dedupe_key("bench", event.notification_id))
        await deps_publisher.publish(env)
        sample.committed[env.event_id] = time.time()  # returned after the inbox write AND its own enqueue
        await asyncio.sleep(PACE_S)
    await wait_applied(rec, list(sample.committed), within=60)
    return sample


AppWrite = Callable[[bool], Awaitable[str]]  # old_id → event id, returns after the commit


async def outbox_phase(write: AppWrite, rec: Recorder, n: int) -> Sample:
    sample = Sample()
    for i in range(n):
        old = i % 2 == 1
        event_id = await write(old)
        sample.committed[event_id] = time.time()
        if old:
            sample.old_ids.add(event_id)
        await asyncio.sleep(PACE_S)
    await wait_applied(rec, list(sample.committed), within=60)
    return sample


def d1_app_writer(http: httpx.AsyncClient, tenant: Any) -> AppWrite:
    async def write(old: bool) -> str:
        body: dict[str, Any] = {"api": "drizzle", "orgId": tenant.org_id, "branchId": tenant.branch_id,
                                "clientId": tenant.client_id}
        if old:
            body.update(eventId=f"evt_{uuidv7_days_ago(3)}", projectId=f"prj_{uuidv7_days_ago(3)}",
                        occurredAt=(datetime.now(UTC) - timedelta(days=3)).isoformat())
        response = await http.post("/projects", json=body)
        response.raise_for_status()
        return str(response.json()["eventId"])
    return write


def sqlite_app_writer(db: Database, tenant: Any) -> AppWrite:
    async def write(old: bool) -> str:
        project = f"prj_{uuidv7_days_ago(3)}" if old else new_id("prj")
        event = NotificationDue(notification_id=new_id("ntf"), kind="booking_confirmed", project_id=project)
        env = envelope_for(event, org_id=tenant.org_id, branch_id=tenant.branch_id,
                           dedupe_key=notification_dedupe_key("booking_confirmed", project),
                           event_id=f"evt_{uuidv7_days_ago(3)}" if old else None)
        await db.batch([
            Statement("INSERT INTO projects (id, branch_id, client_id, status, created_at) VALUES (?, ?, ?, ?, ?)",
                      (project, tenant.branch_id, tenant.client_id, "active", int(time.time() * 1000))),
            inbox.insert(env, datetime.now(UTC), producer="app", self_enqueued=False),
        ])
        return env.event_id
    return write


async def run_pickup(run: Run) -> None:
    try:
        from tests.support.outbox_app import start_outbox_app  # noqa: PLC0415
        from tests.support.provider_servers import provider_servers  # noqa: PLC0415
    except ImportError as exc:
        raise NotAvailable(f"the outbox harness is missing: {exc}") from exc
    from bench.pickup_engines import measure_engine  # noqa: PLC0415

    token, migration_token = secrets.token_hex(16), secrets.token_hex(16)
    with provider_servers() as servers:
        run.log("pickup: starting the app Worker + D1 bridge (one D1) under miniflare")
        try:
            app = start_outbox_app(token, migration_token=migration_token)
            urls = app.__enter__()
        except RuntimeError as exc:
            raise NotAvailable(f"the outbox harness could not start (node/npm/miniflare): {exc}") from exc
        try:
            await measure_engine(run, "d1", servers.url, app_urls=urls, token=token,
                                 migration_token=migration_token)
        finally:
            app.__exit__(None, None, None)
        await measure_engine(run, "sqlite", servers.url)
