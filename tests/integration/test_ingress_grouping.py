"""The ingress's shared calls (wired in `bootstrap.ingress`): concurrent inbox inserts commit together
through `store.coalesce.CoalescingDatabase`, and each caller still gets its own outcome — inserted,
duplicate, or its own failure — on both engines; concurrent enqueues share one Redis round trip
(`jobqueue.grouped.GroupedQueue`) that writes exactly the jobs arq's own `enqueue_job` writes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job

from events import inbox
from events.envelope import Envelope, envelope_for
from events.ids import new_id
from jobqueue import Job as Job_
from jobqueue.arq_redis import APPLY_JOB, ArqQueue, deserialize
from jobqueue.grouped import GroupedQueue
from store import ConstraintViolation, Database, DatabaseError, Statement, TransientError
from store.coalesce import CoalescingDatabase
from store.port import Row
from store.sqlite import SqliteDatabase
from tests.support.sample_events import SpendRecorded

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


class Counted:
    """The real database, counting the calls that reach it (how many callers shared one)."""

    def __init__(self, inner: Database) -> None:
        self.inner, self.writes, self.reads = inner, 0, 0

    async def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        raise AssertionError("the coalescing database reads through query_many")

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        self.reads += 1
        return await self.inner.query_many(statements)

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        self.writes += 1
        return await self.inner.batch(statements)

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        self.writes += 1
        return await self.inner.batches(units)

    async def close(self) -> None:
        await self.inner.close()


def envelope(dedupe_key: str, event_id: str | None = None) -> Envelope:
    return envelope_for(SpendRecorded(client_id=new_id("cli"), amount=1), org_id=new_id("org"), branch_id=None,
                        dedupe_key=dedupe_key, event_id=event_id, occurred_at=NOW, received_at=NOW)


async def inbox_count(db: Database) -> int:
    return int((await db.query("SELECT count(*) AS n FROM event_inbox"))[0]["n"])


async def test_concurrent_inserts_share_commits_and_each_learns_inserted_or_duplicate(db: Database) -> None:
    counted = Counted(db)
    grouped = CoalescingDatabase(counted)
    keys = [f"k{i % 30}" for i in range(60)]  # every key twice: one insert, one duplicate

    results = await asyncio.gather(*(grouped.batch([inbox.insert(envelope(k), NOW)]) for k in keys))

    assert sorted(r[0] for r in results) == [0] * 30 + [1] * 30
    assert counted.writes < len(keys)  # callers arriving together shared a transaction
    assert await inbox_count(db) == 30
    rows = await asyncio.gather(*(grouped.query("SELECT id FROM event_inbox WHERE dedupe_key = ?", (k,))
                                  for k in keys))
    assert all(len(r) == 1 for r in rows)
    assert counted.reads < len(keys)


async def test_one_callers_constraint_violation_fails_that_caller_only(db: Database) -> None:
    grouped = CoalescingDatabase(db)
    taken = envelope("first")
    await grouped.batch([inbox.insert(taken, NOW)])
    reused = envelope("another-key", event_id=taken.event_id)  # an event id reused under another key: a bug
    calls = [grouped.batch([inbox.insert(envelope(f"ok{i}"), NOW)]) for i in range(5)]
    calls.insert(2, grouped.batch([inbox.insert(reused, NOW)]))

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(results[2], ConstraintViolation)
    assert [r for i, r in enumerate(results) if i != 2] == [[1]] * 5
    assert await inbox_count(db) == 6


async def test_a_locked_database_fails_every_caller_and_writes_nothing(sqlite_db: SqliteDatabase) -> None:
    impatient = await SqliteDatabase.open(sqlite_db.path, lock_wait=0.2)
    other_process = sqlite3.connect(sqlite_db.path, isolation_level=None)
    try:
        grouped = CoalescingDatabase(impatient)
        other_process.execute("BEGIN IMMEDIATE")  # another writer holds the lock past our patience
        results = await asyncio.gather(*(grouped.batch([inbox.insert(envelope(f"k{i}"), NOW)]) for i in range(4)),
                                       return_exceptions=True)
        assert all(isinstance(r, TransientError) for r in results)
        other_process.execute("ROLLBACK")
        assert await inbox_count(sqlite_db) == 0
        assert await grouped.batch([inbox.insert(envelope("after"), NOW)]) == [1]  # and it recovers
    finally:
        other_process.close()
        await impatient.close()


async def test_a_caller_that_gives_up_does_not_hold_up_the_others(db: Database) -> None:
    grouped = CoalescingDatabase(db)
    first = asyncio.create_task(grouped.batch([inbox.insert(envelope("a"), NOW)]))
    second = asyncio.create_task(grouped.batch([inbox.insert(envelope("b"), NOW)]))
    await asyncio.sleep(0)  # both wait for their commit
    second.cancel()
    third = await grouped.batch([inbox.insert(envelope("c"), NOW)])

    assert await first == [1]
    assert third == [1]
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_enqueue_many_writes_the_jobs_arq_enqueue_job_writes(arq_redis: ArqRedis) -> None:
    queue = ArqQueue(arq_redis, "test:events")
    later = datetime(2030, 1, 1, tzinfo=UTC)
    assert await queue.enqueue('{"one": 1}', "evt_single") is True

    answers = await queue.enqueue_many([('{"two": 2}', "evt_a", None), ('{"three": 3}', "evt_b", later),
                                        ('{"again": 1}', "evt_single", None)])

    assert answers == [True, True, False]  # a job id the queue holds is refused, as arq refuses it
    single, batched, deferred = [await Job(i, arq_redis, _deserializer=deserialize).info()
                                 for i in ("evt_single", "evt_a", "evt_b")]
    for info, arg in ((single, '{"one": 1}'), (batched, '{"two": 2}'), (deferred, '{"three": 3}')):
        assert info is not None
        assert (info.function, list(info.args), info.kwargs) == (APPLY_JOB, [arg], {})
        assert not info.job_try
    assert await arq_redis.zscore("test:events", "evt_b") == int(later.timestamp() * 1000)
    assert 0 < await arq_redis.pttl("arq:job:evt_a") <= 86_400_000
    await arq_redis.set("arq:result:evt_done", b"x")  # a job that ran keeps its result key: not re-enqueued
    assert await queue.enqueue_many([("{}", "evt_done", None)]) == [False]


async def test_concurrent_enqueues_share_a_round_trip_and_each_gets_its_answer(arq_redis: ArqRedis) -> None:
    calls: list[int] = []

    class Counting(ArqQueue):
        async def enqueue_many(self, jobs: Sequence[Job_]) -> list[bool]:
            calls.append(len(jobs))
            return await super().enqueue_many(jobs)

    grouped = GroupedQueue(Counting(arq_redis, "test:events"))
    ids = [f"evt_{i % 10}" for i in range(20)]

    answers = await asyncio.gather(*(grouped.enqueue("{}", i) for i in ids))

    assert sorted(answers) == [False] * 10 + [True] * 10
    assert len(calls) < len(ids)
    assert await arq_redis.zcard("test:events") == 10
