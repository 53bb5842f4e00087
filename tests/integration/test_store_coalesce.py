"""The coalescing wrapper on both engines (SQLite file, D1 under miniflare): concurrent callers share
engine calls, and each one gets exactly its own result or its own exception, as if it had called alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from events.ids import new_id
from store import (
    AlreadyApplied,
    ConstraintViolation,
    Database,
    ParameterLimitExceeded,
    Statement,
    VersionConflict,
    expect_rows,
    expect_version,
    query_in,
)
from store.coalesce import CoalescingDatabase
from store.sqlite import SqliteDatabase
from tests.support.factories import make_tenant

# A write that keeps its engine call busy for a while (a million-row recursive count), so that callers
# arriving meanwhile are sure to queue behind it.
SLOW = ("INSERT INTO organizations (id, name) SELECT ?, ? || count(*) FROM (WITH RECURSIVE c(x) AS"
        " (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT x FROM c)")


@pytest.fixture
async def coalesced(db: Database) -> AsyncIterator[CoalescingDatabase]:
    return CoalescingDatabase(db)  # the `db` fixture closes the engine


def insert_org(name: str) -> Statement:
    return Statement("INSERT INTO organizations (id, name) VALUES (?, ?)", (new_id("org"), name))


async def names(db: Database, prefix: str) -> set[str]:
    rows = await db.query("SELECT name FROM organizations WHERE name LIKE ?", (prefix + "%",))
    return {str(r["name"]) for r in rows}


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_concurrent_units_commit_together_and_each_gets_its_own_outcome(db: Database, in_flight: int) -> None:
    coalesced = CoalescingDatabase(db, in_flight=in_flight)
    t = await make_tenant(coalesced)
    guard = expect_rows("SELECT count(*) FROM organizations WHERE id = 'org_missing'", (), code="inbox")
    taken = insert_org("unit-taken")
    await coalesced.batch([taken])

    def unit(i: int) -> list[Statement]:
        own = insert_org(f"unit-{i:02}")
        match i % 4:
            case 1:
                return [own, expect_version("invoices", t.invoice_id, 99)]
            case 2:
                return [own, guard]
            case 3:
                return [own, taken]
        return [own]

    _, writes_before = coalesced.engine_calls
    outcomes = await asyncio.gather(*(coalesced.batch(unit(i)) for i in range(40)), return_exceptions=True)
    expected: dict[int, type[BaseException] | None] = {0: None, 1: VersionConflict, 2: AlreadyApplied,
                                                         3: ConstraintViolation}
    for i, outcome in enumerate(outcomes):
        kind = expected[i % 4]
        assert (outcome == [1]) if kind is None else isinstance(outcome, kind), (i, outcome)
    assert await names(coalesced, "unit-") == {"unit-taken"} | {f"unit-{i:02}" for i in range(0, 40, 4)}
    _, writes_after = coalesced.engine_calls
    assert writes_after - writes_before < 40  # they really shared engine calls


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_concurrent_reads_share_calls_and_each_gets_its_own_rows(db: Database, in_flight: int) -> None:
    coalesced = CoalescingDatabase(db, in_flight=in_flight)
    tenants = [await make_tenant(coalesced) for _ in range(3)]
    reads_before, _ = coalesced.engine_calls

    async def read(i: int) -> list[list[dict[str, object]]]:
        t = tenants[i % 3]
        return await coalesced.query_many([Statement("SELECT id FROM invoices WHERE id = ?", (t.invoice_id,)),
                                           Statement("SELECT id FROM clients WHERE id = ?", (t.client_id,))])

    results = await asyncio.gather(*(read(i) for i in range(30)))
    for i, rows in enumerate(results):
        t = tenants[i % 3]
        assert rows == [[{"id": t.invoice_id}], [{"id": t.client_id}]]
    reads_after, _ = coalesced.engine_calls
    assert reads_after - reads_before < 30


async def test_a_callers_bad_read_fails_only_that_caller(coalesced: CoalescingDatabase) -> None:
    t = await make_tenant(coalesced)
    good = Statement("SELECT id FROM invoices WHERE id = ?", (t.invoice_id,))
    too_many = Statement(f"SELECT {', '.join('?' * 101)}", tuple(range(101)))
    outcomes = await asyncio.gather(coalesced.query_many([good]), coalesced.query_many([too_many]),
                                    coalesced.query(good.sql, good.params), return_exceptions=True)
    assert outcomes[0] == [[{"id": t.invoice_id}]]
    assert isinstance(outcomes[1], ParameterLimitExceeded)
    assert outcomes[2] == [{"id": t.invoice_id}]
    assert await query_in(coalesced, "SELECT id FROM invoices WHERE id IN ({in})", [t.invoice_id]) != []


async def test_a_caller_cancelled_while_queued_is_never_sent_and_the_others_commit(
    coalesced: CoalescingDatabase,
) -> None:
    leader = asyncio.ensure_future(coalesced.batch([Statement(SLOW, (new_id("org"), "cancel-leader-"))]))
    await asyncio.sleep(0.02)  # its (slow) group is in flight
    followers = [asyncio.ensure_future(coalesced.batch([insert_org(f"cancel-follower-{i}")])) for i in range(3)]
    await asyncio.sleep(0)  # they queue behind it
    followers[1].cancel()
    outcomes = await asyncio.gather(leader, *followers, return_exceptions=True)
    assert outcomes[0] == [1]
    assert outcomes[1] == [1]
    assert outcomes[3] == [1]
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert await names(coalesced, "cancel-follower-") == {"cancel-follower-0", "cancel-follower-2"}


async def test_a_caller_cancelled_while_its_group_is_in_flight_disturbs_no_other(
    coalesced: CoalescingDatabase,
) -> None:
    blocker = asyncio.ensure_future(coalesced.batch([Statement(SLOW, (new_id("org"), "flight-blocker-"))]))
    await asyncio.sleep(0.02)
    group = [asyncio.ensure_future(coalesced.batch([Statement(SLOW, (new_id("org"), f"flight-{i}-"))]))
             for i in range(3)]
    await blocker
    await asyncio.sleep(0.02)  # the three now share one engine call, in flight
    group[0].cancel()
    outcomes = await asyncio.gather(*group, return_exceptions=True)
    if isinstance(coalesced.inner, SqliteDatabase):
        # SQLite's calls run synchronously on the event loop (`store.sqlite`): a group is never in
        # flight at an await, so the cancel came after its group committed and it has its answer.
        assert outcomes[0] == [1]
    else:
        assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1] == [1]
    assert outcomes[2] == [1]
    assert await coalesced.batch([insert_org("flight-after")]) == [1]  # the wrapper still works
    assert {"flight-1-1000000", "flight-2-1000000", "flight-after"} <= await names(coalesced, "flight-")


async def test_an_idle_caller_goes_alone_at_once(coalesced: CoalescingDatabase) -> None:
    reads, writes = coalesced.engine_calls
    assert await coalesced.batch([insert_org("idle")]) == [1]
    assert await coalesced.query_many([]) == []
    assert await coalesced.batch([]) == []
    assert await coalesced.query("SELECT name FROM organizations WHERE name = 'idle'") == [{"name": "idle"}]
    assert coalesced.engine_calls == (reads + 1, writes + 1)


@pytest.mark.parametrize("on", [True, False])
async def test_the_worker_coalesces_unless_told_not_to(sqlite_db: Database, redis_url: str, on: bool) -> None:
    """`SV_COALESCE` (default on) puts the wrapper inside the instruments: errors and spans stay per unit."""
    from arq.connections import ArqRedis  # noqa: PLC0415

    from bootstrap.worker import build_deps  # noqa: PLC0415
    from tests.support.pipeline import fast_settings  # noqa: PLC0415

    settings = fast_settings(f"sqlite:///{sqlite_db.path}", redis_url, coalesce=on)  # type: ignore[attr-defined]
    redis = ArqRedis.from_url(redis_url)
    deps = await build_deps(settings, redis)
    try:
        assert isinstance(deps.db.inner, CoalescingDatabase) is on  # type: ignore[attr-defined]
    finally:
        await deps.close()
        await redis.aclose()
