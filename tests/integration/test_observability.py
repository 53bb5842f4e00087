"""Observability on the real parts: the bounded pipeline-state reads on SQLite and D1, one shared
snapshot for N processes on a real Redis, database errors counted once by kind, and the ingress's
counters over real HTTP (refusals, duplicates, publish failures)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from arq.connections import ArqRedis

from bootstrap.gateways import account_directory
from bootstrap.ingress import build_app
from bootstrap.telemetry import RedisSharedStore
from events import inbox
from events.envelope import envelope_for
from events.ids import new_id
from events.publish import Publisher
from ingress.app import create_app
from ingress.pipeline import IngressDeps
from jobqueue.arq_redis import ArqQueue
from observability.instruments import CountingQueue, InstrumentedDatabase
from observability.metrics import IngressMetrics, WorkerMetrics
from observability.state import PipelineState, StateRefresher
from readmodels.inbox import ALERT_QUERIES, alert_state
from store import Database, DatabaseError, Statement, TransientError, expect_version
from store.port import Row
from store.sqlite import SqliteDatabase
from tests.support.factories import make_tenant
from tests.support.gateway import connect_account, rzp_captured, serve, sign_razorpay
from tests.support.metrics import Scrape
from tests.support.pipeline import Pipeline
from tests.support.redis_server import free_port
from tests.support.sample_events import SpendRecorded

NOW = datetime(2026, 9, 21, 12, 0, tzinfo=UTC)


async def _publish(db: Database, *, status: str = "pending", available_at: datetime | None = None,
                   created: datetime = NOW) -> str:
    env = envelope_for(SpendRecorded(client_id=new_id("cli"), amount=1), org_id=new_id("org"), branch_id=None,
                       dedupe_key=new_id("evt"), available_at=available_at)
    await db.batch([inbox.insert(env, created)])
    if status == "dead":
        await db.batch([inbox.mark_dead(env.event_id, "Rejected: test", created)])
    return env.event_id


async def test_pipeline_state_counts_are_capped_and_the_age_is_of_the_most_overdue_due_event(db: Database) -> None:
    assert await alert_state(db, NOW) == (await alert_state(db, NOW)).__class__(0, 0, 0.0)
    await _publish(db, created=NOW - timedelta(minutes=5))  # due since 5 minutes
    await _publish(db, available_at=NOW + timedelta(hours=9), created=NOW - timedelta(hours=3))  # quiet hours
    for _ in range(3):
        await _publish(db, status="dead")
    state = await alert_state(db, NOW, cap=2)
    assert (state.pending, state.dead, state.oldest_due_age_s) == (2, 2, 300.0)
    state = await alert_state(db, NOW)
    assert (state.pending, state.dead) == (2, 3)


async def test_nothing_due_yet_reads_zero_age(db: Database) -> None:
    await _publish(db, available_at=NOW + timedelta(hours=1), created=NOW - timedelta(hours=11))
    assert (await alert_state(db, NOW)).oldest_due_age_s == 0.0


async def test_the_pipeline_state_reads_only_the_status_index(sqlite_db: SqliteDatabase) -> None:
    for sql in ALERT_QUERIES:
        plan = await sqlite_db.query(f"EXPLAIN QUERY PLAN {sql}", (10_000,) if "?" in sql else ())
        details = " | ".join(str(row["detail"]) for row in plan)
        assert "USING COVERING INDEX idx_event_inbox_status_available_at (status=?)" in details, details
        assert "TEMP B-TREE" not in details, details
        assert "SCAN event_inbox" not in details, details


class CountingReads:
    """The real database, counting the read round trips made through it."""

    def __init__(self, inner: Database) -> None:
        self.inner, self.round_trips = inner, 0

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.round_trips += 1
        return await self.inner.query(sql, params)

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        self.round_trips += 1
        return await self.inner.query_many(statements)

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        return await self.inner.batch(statements)

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        return await self.inner.batches(units)

    async def close(self) -> None:
        await self.inner.close()


async def test_n_processes_share_one_snapshot_computed_once_per_interval(
    sqlite_db: SqliteDatabase, redis: aioredis.Redis, redis_url: str,
) -> None:
    from jobqueue.arq_redis import connect  # noqa: PLC0415

    await _publish(sqlite_db, created=datetime.now(UTC) - timedelta(seconds=30))
    pool = await connect(redis_url, "test:events")
    reads = CountingReads(sqlite_db)
    metrics = [WorkerMetrics() for _ in range(3)]
    refreshers = [StateRefresher(db=reads, queue=ArqQueue(pool, "test:events"), store=RedisSharedStore(pool),
                                 state=PipelineState(), errors=m, key="test:events:pipeline-state", interval_s=0.5)
                  for m in metrics]
    async def round_of_ticks() -> list[Any]:
        return [await r.tick() for r in refreshers]  # each process's tick, one after the other

    try:
        snaps = await round_of_ticks()
        assert reads.round_trips == 1  # three processes, one query round trip
        assert sum(r.refreshed for r in refreshers) == 1
        assert len(set(snaps)) == 1
        assert snaps[0] is not None
        assert (snaps[0].pending, snaps[0].dead, snaps[0].queue_depth) == (1, 0, 0)
        assert snaps[0].oldest_pending_age_s >= 30
        again = await round_of_ticks()  # within the interval: nobody recomputes
        assert reads.round_trips == 1
        assert again == snaps
        await asyncio.sleep(0.5)  # the lock has expired: the next round recomputes once
        await round_of_ticks()
        assert reads.round_trips == 2
        assert sum(r.refreshed for r in refreshers) == 2
    finally:
        await pool.aclose()


async def test_a_refresher_without_redis_counts_the_error_and_keeps_serving_its_last_snapshot(
    sqlite_db: SqliteDatabase, redis_url: str,
) -> None:
    from jobqueue.arq_redis import connect  # noqa: PLC0415

    pool = await connect(redis_url, "test:events")
    metrics = WorkerMetrics()
    state = PipelineState()
    refresher = StateRefresher(db=sqlite_db, queue=ArqQueue(pool, "test:events"), store=RedisSharedStore(pool),
                               state=state, errors=metrics, key="test:gone:pipeline-state", interval_s=0.5)
    first = await refresher.tick()
    nobody = aioredis.Redis(host="127.0.0.1", port=free_port())  # nothing listens there
    refresher.store = RedisSharedStore(cast(ArqRedis, nobody))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await refresher.tick()
    finally:
        await nobody.aclose()
        await pool.aclose()
    assert state.latest == first is not None
    assert Scrape(metrics.exposition().decode()).value("studiovault_redis_errors_total", kind="unavailable") == 1


async def test_database_errors_are_counted_once_by_kind_and_the_inbox_guard_is_not_one(db: Database) -> None:
    metrics = WorkerMetrics()
    counted = InstrumentedDatabase(db, metrics)
    t = await make_tenant(db)
    event_id = await _publish(db)
    await counted.batch([inbox.mark_applied(event_id, NOW)])
    calls = [
        counted.batch([Statement("INSERT INTO organizations (id, name, created_at) VALUES (?, 'x', 0)",
                                 (t.org_id,))]),  # duplicate primary key
        counted.query("SELECT * FROM no_such_table"),
        counted.batch([expect_version("clients", t.client_id, 99)]),
        counted.batch([inbox.guard_pending(event_id)]),  # already applied: exactly-once, not an error
    ]
    for call in calls:
        with pytest.raises(Exception):  # noqa: B017, PT011 - each raises its own typed error
            await call
    scrape = Scrape(metrics.exposition().decode())
    counts = {kind: scrape.value("studiovault_database_errors_total", kind=kind)
              for kind in ("transient", "conflict", "constraint", "query", "unavailable")}
    assert counts == {"transient": 0, "conflict": 1, "constraint": 1, "query": 1, "unavailable": 0}


# ---- the ingress, over real HTTP ------------------------------------------------------------------------

@pytest.fixture
async def http(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    """The production ingress (bootstrap: its own database, Redis and state refresher) under uvicorn."""
    settings = pipeline.settings.replace(max_body_bytes=2048, pipeline_state_interval_s=0.2)
    async with serve(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def test_the_ingress_counts_each_request_by_source_and_code_and_serves_metrics(
    pipeline: Pipeline, http: httpx.AsyncClient,
) -> None:
    t = await make_tenant(pipeline.db)
    endpoint = (await connect_account(pipeline.db, t.org_id)).webhook_path  # the studio's own Razorpay account
    body, headers = sign_razorpay(rzp_captured(t.invoice_id, 118000, payment_id="pay_Metrics01"), event_id="LtM1")
    assert (await http.post(endpoint, content=body, headers=headers)).status_code == 200
    redelivered = await http.post(endpoint, content=body, headers=headers)
    assert redelivered.json()["status"] == "duplicate"
    forged = await http.post(endpoint, content=body, headers=headers | {"x-razorpay-signature": "0" * 64})
    assert forged.status_code == 401
    huge = b"{" + b" " * 3000 + b"}"
    assert (await http.post(endpoint, content=huge, headers=headers)).status_code == 413

    async def scraped() -> Scrape:
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return Scrape(response.text)

    openmetrics = await http.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")  # what a Prometheus server asks for and gets
    scrape = await scraped()
    assert scrape.value("studiovault_ingress_requests_total", source="razorpay", code="200") == 2
    assert scrape.value("studiovault_ingress_requests_total", source="razorpay", code="401") == 1
    assert scrape.value("studiovault_ingress_requests_total", source="razorpay", code="413") == 1
    assert scrape.value("studiovault_ingress_requests_total", source="stripe", code="200") == 0
    assert scrape.value("studiovault_ingress_signature_failures_total", source="razorpay") == 1
    assert scrape.value("studiovault_ingress_publish_failures_total", source="razorpay") == 0
    assert scrape.value("studiovault_ingress_request_duration_seconds_count", source="razorpay") == 4
    assert scrape.value("studiovault_ingress_request_body_bytes_count", source="razorpay") == 4
    assert scrape.value("studiovault_ingress_request_body_bytes_sum", source="razorpay") == 3 * len(body) + len(huge)
    deadline = asyncio.get_running_loop().time() + 10
    while scrape.value("studiovault_inbox_events", status="pending") != 1:  # the shared snapshot catches up
        assert asyncio.get_running_loop().time() < deadline, scrape.text
        await asyncio.sleep(0.1)
        scrape = await scraped()
    assert scrape.value("studiovault_queue_depth") == 1
    assert scrape.value("studiovault_pipeline_state_timestamp_seconds") > NOW.timestamp()


class RefusingQueue:
    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        raise ConnectionRefusedError(111, "Connection refused")

    async def depth(self) -> int:
        raise ConnectionRefusedError(111, "Connection refused")


class BatchesFail:
    def __init__(self, inner: Database) -> None:
        self.inner = inner

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.inner.query(sql, params)

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        return await self.inner.query_many(statements)

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        raise TransientError("D1_ERROR: Network connection lost.")

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        raise TransientError("D1_ERROR: Network connection lost.")

    async def close(self) -> None:
        return None


async def test_a_failed_enqueue_or_inbox_write_is_a_publish_failure(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    endpoint = (await connect_account(pipeline.db, t.org_id)).webhook_path
    metrics = IngressMetrics()
    databases: dict[str, Database] = {"queue_down": InstrumentedDatabase(pipeline.db, metrics),
                                      "db_down": InstrumentedDatabase(BatchesFail(pipeline.db), metrics)}
    settings = pipeline.settings
    answers = {}
    for case, db in databases.items():
        @contextlib.asynccontextmanager
        async def open_deps(db: Database = db) -> AsyncIterator[IngressDeps]:
            yield IngressDeps(db=db, publisher=Publisher(db, CountingQueue(RefusingQueue(), metrics)),
                              metrics=metrics, accounts=account_directory(pipeline.db, settings.gateways))

        async with serve(create_app(settings.ingress, open_deps)) as url, httpx.AsyncClient(base_url=url) as client:
            body, headers = sign_razorpay(rzp_captured(t.invoice_id, 1000, payment_id=f"pay_{case}"))
            answers[case] = (await client.post(endpoint, content=body, headers=headers)).status_code
    assert answers == {"queue_down": 200, "db_down": 503}  # accepted and durable (the re-drive enqueues it)
    assert [r["status"] for r in await pipeline.db.query("SELECT status FROM event_inbox")] == ["pending"]
    scrape = Scrape(metrics.exposition().decode())
    assert scrape.value("studiovault_ingress_publish_failures_total", source="razorpay") == 2
    assert scrape.value("studiovault_redis_errors_total", kind="unavailable") == 1
    assert scrape.value("studiovault_database_errors_total", kind="transient") == 1
    assert scrape.value("studiovault_ingress_requests_total", source="razorpay", code="503") == 1


async def test_dead_letter_selections_count_the_whole_set_on_both_engines(db: Database) -> None:
    from readmodels.inbox import DeadFilter, count_dead, dead_ids, list_dead  # noqa: PLC0415

    ids = [await _publish(db, status="dead") for _ in range(3)]
    await db.batch([Statement("UPDATE event_inbox SET type = 'payment.captured', last_error = 'unknown_invoice: x'"
                              " WHERE id = ?", (ids[0],))])
    assert await count_dead(db) == 3
    assert await count_dead(db, DeadFilter(type="payment.*")) == 1
    assert await count_dead(db, DeadFilter(type="test.spend_recorded")) == 2
    assert await dead_ids(db, DeadFilter(reason="unknown_invoice")) == [ids[0]]
    assert await dead_ids(db, DeadFilter(type="test.*", reason="Rejected")) == sorted(ids[1:])
    rows = await list_dead(db, 1, DeadFilter(type="test.*"))
    assert len(rows) == 1
    assert rows[0]["correlation_id"] is None  # published without the publisher's stamp
