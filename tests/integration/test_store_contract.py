"""One contract for every `Database` adapter: each test runs on the SQLite file and on D1 (miniflare)."""

from __future__ import annotations

import asyncio
import json

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
from tests.support.factories import NOW_MS, make_tenant


async def count(db: Database, table: str) -> int:
    return int((await db.query(f"SELECT count(*) AS n FROM {table}"))[0]["n"])


async def test_batch_rolls_back_entirely_when_a_later_statement_fails(db: Database) -> None:
    org = new_id("org")
    with pytest.raises(ConstraintViolation):
        await db.batch([
            Statement("INSERT INTO organizations (id, name) VALUES (?, ?)", (org, "first")),
            Statement("INSERT INTO organizations (id, name) VALUES (?, ?)", (org, "duplicate id")),
        ])
    assert await count(db, "organizations") == 0


async def test_batch_returns_changes_per_statement(db: Database) -> None:
    org_a, org_b = new_id("org"), new_id("org")
    changes = await db.batch([
        Statement("INSERT INTO organizations (id, name) VALUES (?, ?), (?, ?)", (org_a, "A", org_b, "B")),
        Statement("UPDATE organizations SET name = 'C' WHERE id = ?", (org_a,)),
        Statement("UPDATE organizations SET name = 'D' WHERE id = 'org_missing'"),
    ])
    assert changes == [2, 1, 0]


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(ConstraintViolation, match="FOREIGN KEY"):
        await db.batch([Statement(
            "INSERT INTO branches (id, org_id, name) VALUES (?, ?, ?)", (new_id("brn"), new_id("org"), "orphan")
        )])
    assert await count(db, "branches") == 0


async def test_stale_version_aborts_the_whole_batch_with_version_conflict(db: Database) -> None:
    t = await make_tenant(db)
    with pytest.raises(VersionConflict):
        await db.batch([
            Statement("INSERT INTO organizations (id, name) VALUES (?, ?)", (new_id("org"), "written first")),
            expect_version("invoices", t.invoice_id, 2),  # the row is at version 1
            Statement("UPDATE invoices SET status = 'paid', version = version + 1 WHERE id = ?", (t.invoice_id,)),
        ])
    assert await count(db, "organizations") == 1
    rows = await db.query("SELECT status, version FROM invoices WHERE id = ?", (t.invoice_id,))
    assert rows == [{"status": "issued", "version": 1}]


async def test_current_version_lets_the_batch_commit(db: Database) -> None:
    t = await make_tenant(db)
    await db.batch([
        expect_version("invoices", t.invoice_id, 1),
        Statement("UPDATE invoices SET status = 'paid', version = version + 1 WHERE id = ?", (t.invoice_id,)),
    ])
    rows = await db.query("SELECT status, version FROM invoices WHERE id = ?", (t.invoice_id,))
    assert rows == [{"status": "paid", "version": 2}]


@pytest.mark.parametrize("table", ["transactions", "audit_logs"])
@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
async def test_history_tables_are_append_only(db: Database, table: str, verb: str) -> None:
    t = await make_tenant(db)
    user = new_id("usr")
    row = new_id("txn") if table == "transactions" else new_id("aud")
    await db.batch([
        Statement("INSERT INTO users (id, org_id, status) VALUES (?, ?, 'active')", (user, t.org_id)),
        Statement(
            "INSERT INTO transactions (id, invoice_id, gateway_payment_id, status, amount, created_at)"
            " VALUES (?, ?, 'pay_1', 'paid', 10.5, ?)", (row, t.invoice_id, NOW_MS),
        ) if table == "transactions" else Statement(
            "INSERT INTO audit_logs (id, org_id, actor_user_id, event_type, created_at) VALUES (?, ?, ?, 'x', ?)",
            (row, t.org_id, user, NOW_MS),
        ),
    ])
    sql = f"UPDATE {table} SET created_at = 0 WHERE id = ?" if verb == "UPDATE" else f"DELETE FROM {table} WHERE id = ?"
    with pytest.raises(ConstraintViolation, match="append_only"):
        await db.batch([Statement(sql, (row,))])
    assert await count(db, table) == 1


async def test_unicode_and_large_json_round_trip(db: Database) -> None:
    org = new_id("org")
    name = "फोटो स्टूडियो 📸 — Ñandú ✓"
    config = {"note": "ಬೆಂಗಳೂರು " * 2_000, "items": [{"i": i, "label": f"खंड {i}"} for i in range(3_000)]}
    blob = json.dumps(config, ensure_ascii=False)
    assert len(blob.encode()) > 90_000  # near D1's 100 KB statement limit, bound as a parameter
    await db.batch([Statement("INSERT INTO organizations (id, name, config_json) VALUES (?, ?, ?)", (org, name, blob))])
    rows = await db.query("SELECT name, config_json FROM organizations WHERE id = ?", (org,))
    assert rows[0]["name"] == name
    assert json.loads(rows[0]["config_json"]) == config


async def test_more_than_100_bound_parameters_is_refused_clearly(db: Database) -> None:
    ids = [new_id("org") for _ in range(101)]
    with pytest.raises(ParameterLimitExceeded, match="100"):
        await db.query(f"SELECT id FROM organizations WHERE id IN ({', '.join('?' * len(ids))})", ids)


async def test_query_in_chunks_large_in_lists_under_the_limit(db: Database) -> None:
    ids = [new_id("org") for _ in range(250)]
    for start in range(0, 250, 50):
        chunk = ids[start : start + 50]
        await db.batch([Statement(
            "INSERT INTO organizations (id, name) VALUES " + ", ".join("(?, 'o')" for _ in chunk), tuple(chunk)
        )])
    wanted = [*ids[::2], new_id("org")]  # 126 values, one unknown
    rows = await query_in(db, "SELECT id FROM organizations WHERE name = ? AND id IN ({in})", wanted,
                          params_before=["o"])
    assert sorted(r["id"] for r in rows) == sorted(ids[::2])


async def test_query_many_returns_each_statements_rows(db: Database) -> None:
    t = await make_tenant(db)
    invoices, missing, n = await db.query_many([
        Statement("SELECT id, amount_total FROM invoices WHERE id = ?", (t.invoice_id,)),
        Statement("SELECT id FROM projects WHERE id = 'prj_missing'"),
        Statement("SELECT count(*) AS n FROM clients"),
    ])
    assert invoices == [{"id": t.invoice_id, "amount_total": 1180}]
    assert missing == []
    assert n == [{"n": 1}]


async def test_concurrent_writers_lose_no_update(db: Database) -> None:
    """20 writers each add 1 to a client's total_spend with a version check and retry on conflict."""
    t = await make_tenant(db)
    conflicts = 0

    async def add_one() -> None:
        nonlocal conflicts
        while True:
            row = (await db.query("SELECT total_spend, version FROM clients WHERE id = ?", (t.client_id,)))[0]
            await asyncio.sleep(0)  # as a unit of work does between its read and its write: the others run
            try:
                await db.batch([
                    expect_version("clients", t.client_id, row["version"]),
                    Statement("UPDATE clients SET total_spend = ?, version = version + 1 WHERE id = ?",
                              (row["total_spend"] + 1, t.client_id)),
                ])
            except VersionConflict:
                conflicts += 1
            else:
                return

    await asyncio.gather(*(add_one() for _ in range(20)))
    rows = await db.query("SELECT total_spend, version FROM clients WHERE id = ?", (t.client_id,))
    assert rows == [{"total_spend": 20, "version": 21}]
    assert conflicts > 0  # the writers really raced


async def test_concurrent_multi_statement_reads_do_not_interfere(db: Database) -> None:
    """Many tasks each reading several statements at once (as concurrent jobs in a worker do)."""
    t = await make_tenant(db)
    reads = [Statement("SELECT id FROM invoices WHERE id = ?", (t.invoice_id,)),
             Statement("SELECT id FROM clients WHERE id = ?", (t.client_id,))]
    results = await asyncio.gather(*(db.query_many(reads) for _ in range(30)))
    assert all(r == [[{"id": t.invoice_id}], [{"id": t.client_id}]] for r in results)


def new_org(name: str) -> tuple[str, Statement]:
    org = new_id("org")
    return org, Statement("INSERT INTO organizations (id, name) VALUES (?, ?)", (org, name))


async def orgs_named(db: Database, *names: str) -> set[str]:
    rows = await query_in(db, "SELECT name FROM organizations WHERE name IN ({in})", names)
    return {str(r["name"]) for r in rows}


async def test_batches_a_middle_units_conflict_fails_only_that_unit(db: Database) -> None:
    t = await make_tenant(db)
    bump = Statement("UPDATE invoices SET status = 'paid', version = version + 1 WHERE id = ?", (t.invoice_id,))
    results = await db.batches([
        [new_org("first")[1]],
        [new_org("conflicted")[1], expect_version("invoices", t.invoice_id, 7), bump],
        [new_org("last")[1], expect_version("invoices", t.invoice_id, 1), bump],
    ])
    assert results[0] == [1]
    assert isinstance(results[1], VersionConflict)
    assert isinstance(results[2], list)
    assert results[2][0] == 1
    assert results[2][2] == 1
    assert await orgs_named(db, "first", "conflicted", "last") == {"first", "last"}
    rows = await db.query("SELECT status, version FROM invoices WHERE id = ?", (t.invoice_id,))
    assert rows == [{"status": "paid", "version": 2}]  # the conflicted unit's UPDATE did not run


async def test_batches_already_applied_and_constraint_violations_stay_in_their_slots(db: Database) -> None:
    _taken, insert_taken = new_org("taken")
    await db.batch([insert_taken])
    guard = expect_rows("SELECT count(*) FROM organizations WHERE id = 'org_missing'", (), code="inbox")
    results = await db.batches([
        [new_org("guarded")[1], guard],
        [new_org("duplicate")[1], insert_taken],
        [new_org("fine")[1]],
    ])
    assert isinstance(results[0], AlreadyApplied)
    assert isinstance(results[1], ConstraintViolation)
    assert results[2] == [1]
    assert await orgs_named(db, "guarded", "duplicate", "fine") == {"fine"}


async def test_batches_a_unit_over_the_limits_fails_alone(db: Database) -> None:
    too_many = Statement(f"SELECT {', '.join('?' * 101)}", tuple(range(101)))
    results = await db.batches([[new_org("before")[1]], [new_org("limited")[1], too_many], [new_org("after")[1]]])
    assert results[0] == [1]
    assert results[2] == [1]
    assert isinstance(results[1], ParameterLimitExceeded)
    assert await orgs_named(db, "before", "limited", "after") == {"before", "after"}


async def test_batches_of_nothing_and_of_empty_units_write_nothing(db: Database) -> None:
    assert await db.batches([]) == []
    assert await db.batches([[], []]) == [[], []]
    assert await db.batches([[], [new_org("alone")[1]], []]) == [[], [1], []]
    assert await orgs_named(db, "alone") == {"alone"}


async def test_batches_runs_units_in_order_each_seeing_the_ones_before(db: Database) -> None:
    org, insert = new_org("ordered")
    rename = Statement("UPDATE organizations SET name = 'renamed' WHERE id = ?", (org,))
    results = await db.batches([[insert], [rename], [insert]])
    assert results[:2] == [[1], [1]]
    assert isinstance(results[2], ConstraintViolation)  # the first unit's row is there already
    assert await orgs_named(db, "ordered", "renamed") == {"renamed"}
