"""The inbox feed (migration 0008) and its poller, on both engines: rows the pipeline did not enqueue
itself are fed in commit order, whatever their event id says, and enqueued once by one poller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
import uuid_utils

from events import inbox
from events.envelope import Envelope, envelope_for
from events.ids import new_id
from events.publish import Publisher
from jobqueue.arq_redis import ArqQueue, connect
from jobqueue.redis_cursor import RedisFeedCursor
from producers.inbox_feed import POLL_SQL, poll_feed, prune_feed
from readmodels.inbox import feed_waiting
from store import ConstraintViolation, Database, Statement
from tests.support.factories import make_tenant
from tests.support.pipeline import Pipeline
from tests.support.sample_events import SpendRecorded

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def event(dedupe_key: str, *, event_id: str | None = None, occurred_at: datetime | None = None) -> Envelope:
    return envelope_for(SpendRecorded(client_id=new_id("cli"), amount=1), org_id=new_id("org"),
                        branch_id=new_id("brn"), dedupe_key=dedupe_key, event_id=event_id, occurred_at=occurred_at)


def uuidv7_at(moment: datetime) -> str:
    """A UUIDv7 made at `moment`, as an offline desktop made it then."""
    return str(uuid_utils.uuid7(nanoseconds=int(moment.timestamp() * 1000) * 1_000_000))


async def external_insert(db: Database, env: Envelope, now: datetime = NOW) -> int:
    """What the app's outbox does: an inbox row it does not enqueue itself."""
    (changes,) = await db.batch([inbox.insert(env, now, producer="app", self_enqueued=False)])
    return changes


async def feed(db: Database) -> list[str]:
    return [str(r["event_id"]) for r in await db.query("SELECT event_id FROM inbox_feed ORDER BY seq")]


async def test_only_pending_rows_the_writer_does_not_enqueue_are_fed(db: Database) -> None:
    outside, own, ignored = event("k:outside"), event("k:own"), event("k:ignored")
    assert await external_insert(db, outside) >= 1
    await db.batch([inbox.insert(own, NOW)])  # the Publisher's own write: it enqueues it itself
    await db.batch([inbox.insert(ignored, NOW, "ignored", self_enqueued=False)])
    assert await external_insert(db, event("k:outside")) == 0  # same dedupe key: nothing, and no feed row
    assert await feed(db) == [outside.event_id]
    rows = await db.query("SELECT id, producer, self_enqueued FROM event_inbox ORDER BY created_at, id")
    assert {(r["id"], r["producer"], r["self_enqueued"]) for r in rows} == {
        (outside.event_id, "app", 0), (own.event_id, None, 1), (ignored.event_id, None, 0)}


async def test_an_event_id_reused_under_another_dedupe_key_fails_the_batch(db: Database) -> None:
    first = event("k:first")
    await external_insert(db, first)
    again = first.model_copy(update={"dedupe_key": "k:second"})
    with pytest.raises(ConstraintViolation, match=r"event_inbox\.id"):
        await db.batch([inbox.insert(again, NOW)])
    assert [r["dedupe_key"] for r in await db.query("SELECT dedupe_key FROM event_inbox")] == ["k:first"]
    assert await feed(db) == [first.event_id]


async def test_feed_order_is_commit_order_not_event_id_order(db: Database) -> None:
    new = event("k:new")
    three_days_old = event("k:desktop", event_id=f"evt_{uuidv7_at(NOW - timedelta(days=3))}",
                           occurred_at=NOW - timedelta(days=3))
    await external_insert(db, new)
    await external_insert(db, three_days_old)
    assert three_days_old.event_id < new.event_id  # its id sorts first ...
    assert await feed(db) == [new.event_id, three_days_old.event_id]  # ... it committed second


async def test_a_pruned_seq_is_never_handed_out_again(db: Database) -> None:
    for i in range(3):
        await external_insert(db, event(f"k:{i}"))
    (last,) = await db.query("SELECT max(seq) AS seq FROM inbox_feed")
    await db.batch([Statement("DELETE FROM inbox_feed")])
    await external_insert(db, event("k:after"))
    (after,) = await db.query("SELECT seq FROM inbox_feed")
    assert after["seq"] > last["seq"]


async def test_a_poll_reads_through_the_primary_keys_only(schema_db: Database) -> None:
    """The cost of a poll does not grow with the inbox or the feed: a rowid range and a PK lookup.
    (EXPLAIN is not a data statement: on D1 it needs the migration token, `schema_db`.)"""
    plan = await schema_db.query("EXPLAIN QUERY PLAN " + POLL_SQL, (0, 500))
    details = [str(r["detail"]) for r in plan]
    assert any(d.startswith("SEARCH f USING INTEGER PRIMARY KEY (rowid>?)") for d in details), details
    assert any(d.startswith("SEARCH i USING INDEX sqlite_autoindex_event_inbox_1 (id=?)") for d in details), details
    assert not any("SCAN" in d or "TEMP B-TREE" in d for d in details), details


@pytest.fixture
async def queue(redis_url: str, redis: aioredis.Redis) -> AsyncIterator[ArqQueue]:
    """An arq queue on a flushed Redis (the `redis` fixture flushes it)."""
    del redis
    pool = await connect(redis_url, "test:feed")
    yield ArqQueue(pool, "test:feed")
    await pool.aclose()


async def queued_ids(queue: ArqQueue) -> list[str]:
    return sorted(k.decode().removeprefix("arq:job:") for k in await queue.redis.keys("arq:job:*"))


async def test_a_poll_enqueues_pending_rows_after_the_cursor_once_and_moves_it(db: Database, queue: ArqQueue) -> None:
    cursor = RedisFeedCursor(queue.redis, "test:feed:feed")
    envs = [event(f"k:{i}") for i in range(5)]
    for env in envs:
        await external_insert(db, env)
    await db.batch([Statement("UPDATE event_inbox SET status = 'applied' WHERE id = ?", (envs[1].event_id,))])
    first = await poll_feed(db, queue, cursor, NOW, limit=3)
    assert (first.rows, first.enqueued, first.full) == (3, 2, True)
    second = await poll_feed(db, queue, cursor, NOW, limit=3)
    assert (second.rows, second.enqueued, second.full) == (2, 2, False)
    assert await queued_ids(queue) == sorted(e.event_id for i, e in enumerate(envs) if i != 1)
    idle = await poll_feed(db, queue, cursor, NOW, limit=3)
    assert (idle.rows, idle.enqueued, idle.cursor) == (0, 0, second.cursor)
    assert int(await queue.redis.get("test:feed:feed:cursor")) == second.cursor


async def test_a_deferred_event_is_enqueued_for_its_time(db: Database, queue: ArqQueue) -> None:
    later = event("k:later").model_copy(update={"available_at": NOW + timedelta(hours=2)})
    await external_insert(db, later)
    await poll_feed(db, queue, RedisFeedCursor(queue.redis, "test:feed:feed"), NOW)
    (score,) = [s for _, s in await queue.redis.zrange("test:feed", 0, -1, withscores=True)]
    assert score == (NOW + timedelta(hours=2)).timestamp() * 1000


async def test_concurrent_pollers_enqueue_each_row_once_and_a_held_lock_skips(db: Database, queue: ArqQueue) -> None:
    envs = [event(f"k:{i}") for i in range(20)]
    for env in envs:
        await external_insert(db, env)
    cursors = [RedisFeedCursor(queue.redis, "test:feed:feed") for _ in range(4)]
    results = await asyncio.gather(*(poll_feed(db, queue, c, NOW) for c in cursors))
    assert sorted(r.polled for r in results) == [False, False, False, True]
    assert sum(r.enqueued for r in results) == 20
    lease = await cursors[0].acquire()
    assert lease is not None
    assert not (await poll_feed(db, queue, cursors[1], NOW)).polled
    await cursors[0].release(lease)


async def test_several_workers_read_the_feed_once_per_spacing(db: Database, queue: ArqQueue) -> None:
    """However many workers poll, the database sees one poll per spacing (a draining worker passes 0)."""
    workers = [RedisFeedCursor(queue.redis, "test:feed:feed") for _ in range(3)]
    polled = [(await poll_feed(db, queue, c, NOW, spacing_s=0.3)).polled for c in workers]
    assert polled == [True, False, False]
    assert (await poll_feed(db, queue, workers[1], NOW, spacing_s=0.0)).polled  # draining a full page
    await asyncio.sleep(0.35)
    assert (await poll_feed(db, queue, workers[2], NOW, spacing_s=0.3)).polled


async def test_a_stale_lease_cannot_move_the_cursor(queue: ArqQueue) -> None:
    cursor = RedisFeedCursor(queue.redis, "test:feed:feed", lock_ms=50)
    stale = await cursor.acquire()
    assert stale is not None
    await asyncio.sleep(0.1)  # its lock expired; another worker takes it and moves on
    fresh = await cursor.acquire()
    assert fresh is not None
    assert await cursor.advance(fresh, 10)
    assert not await cursor.advance(stale, 99)
    assert await cursor.advance(fresh, 5)  # and never backwards
    assert int(await queue.redis.get("test:feed:feed:cursor")) == 10


async def test_pruning_keeps_rows_not_yet_behind_the_cursor_or_young(db: Database, queue: ArqQueue) -> None:
    cursor = RedisFeedCursor(queue.redis, "test:feed:feed")
    for i in range(3):
        await external_insert(db, event(f"old:{i}"), NOW - timedelta(hours=2))
    assert await prune_feed(db, cursor, NOW, timedelta(hours=1)) == 0  # no cursor yet: all may be waiting
    await poll_feed(db, queue, cursor, NOW)
    await external_insert(db, event("old:waiting"), NOW - timedelta(hours=2))
    await external_insert(db, event("young"), NOW)
    assert await prune_feed(db, cursor, NOW, timedelta(hours=1)) == 3
    assert len(await feed(db)) == 2


async def test_feed_waiting_counts_the_rows_after_the_cursor(db: Database, queue: ArqQueue) -> None:
    cursor = RedisFeedCursor(queue.redis, "test:feed:feed")
    for i in range(3):
        await external_insert(db, event(f"k:{i}"))
    assert await feed_waiting(db, await cursor.current()) == 3
    await poll_feed(db, queue, cursor, NOW, limit=2)
    assert await feed_waiting(db, await cursor.current()) == 1


async def test_a_lost_cursor_replays_the_feed_kept_and_enqueues_only_pending(db: Database, queue: ArqQueue) -> None:
    cursor = RedisFeedCursor(queue.redis, "test:feed:feed")
    envs = [event(f"k:{i}") for i in range(3)]
    for env in envs:
        await external_insert(db, env)
    await poll_feed(db, queue, cursor, NOW)
    await db.batch([Statement("UPDATE event_inbox SET status = 'applied' WHERE id = ?", (envs[0].event_id,))])
    await queue.redis.flushall()
    replay = await poll_feed(db, queue, cursor, NOW)
    assert (replay.rows, replay.enqueued) == (3, 2)


async def test_the_publisher_marks_its_rows_so_the_feed_skips_them(db: Database, queue: ArqQueue) -> None:
    published = await Publisher(db, queue).publish(event("k:published"), producer="desktop-sync")
    assert published.enqueued
    assert await feed(db) == []
    (row,) = await db.query("SELECT producer, self_enqueued FROM event_inbox")
    assert (row["producer"], row["self_enqueued"]) == ("desktop-sync", 1)


async def test_a_worker_applies_outbox_rows_within_two_seconds_of_commit_old_ids_too(pipeline: Pipeline) -> None:
    """The feed poller, not the re-drive: the worker's start-up sweep is over before the rows commit."""
    tenant = await make_tenant(pipeline.db)
    worker = await pipeline.start_worker()

    async def polled() -> bool:
        poller = worker.ctx.get("feed_poller")
        return poller is not None and poller.polls > 0

    await pipeline.wait_for(polled, what="the feed poller's first poll")
    now = datetime.now(UTC)
    envs = [
        envelope_for(SpendRecorded(client_id=tenant.client_id, amount=1), org_id=tenant.org_id,
                     branch_id=tenant.branch_id, dedupe_key="outbox:new"),
        envelope_for(SpendRecorded(client_id=tenant.client_id, amount=2), org_id=tenant.org_id,
                     branch_id=tenant.branch_id, dedupe_key="outbox:desktop", occurred_at=now - timedelta(days=3),
                     event_id=f"evt_{uuidv7_at(now - timedelta(days=3))}"),
    ]
    latencies = []
    for env in envs:
        committed = asyncio.get_running_loop().time()
        await external_insert(pipeline.db, env, datetime.now(UTC))
        await pipeline.wait_for(lambda env=env: _applied(pipeline, env.event_id), within=2.0, what=env.dedupe_key)
        latencies.append(asyncio.get_running_loop().time() - committed)
    assert max(latencies) < 2.0, latencies
    (client,) = await pipeline.db.query("SELECT total_spend FROM clients WHERE id = ?", (tenant.client_id,))
    assert client["total_spend"] == 3


async def _applied(pipeline: Pipeline, event_id: str) -> bool:
    return await pipeline.inbox_status(event_id) == "applied"
