"""Every billing query goes through an index (EXPLAIN QUERY PLAN on a seeded SQLite file, with and
without planner statistics): no full scan of media_objects, notifications, projects or the inbox."""

from __future__ import annotations

from datetime import datetime

import pytest

from events.billing import billing_dedupe_key
from handlers.billing.handler import snapshot_reads
from store import Statement
from store.sqlite import SqliteDatabase
from tests.support.billing_seed import SeedSpec, close_event, prepare_close, seed_sqlite_file

NOW = datetime.fromisoformat("2026-11-01T06:00:00+00:00")


async def plan_of(db: SqliteDatabase, statement: Statement) -> list[str]:
    return [str(r["detail"]) for r in await db.query("EXPLAIN QUERY PLAN " + statement.sql, statement.params)]


def full_scans(details: list[str]) -> list[str]:
    """Plan steps that read a whole table (a SCAN that is not of a constant row or a subquery result)."""
    return [d for d in details if d.startswith("SCAN") and "CONSTANT ROW" not in d and "SUBQUERY" not in d]


@pytest.fixture(params=[False, True], ids=["no-statistics", "analyzed"])
async def seeded(request: pytest.FixtureRequest, sqlite_db: SqliteDatabase) -> tuple[SqliteDatabase, str]:
    spec = SeedSpec(orgs=30, media=3_000, notifications=600)
    result = seed_sqlite_file(sqlite_db.path, spec, analyze=request.param)
    return sqlite_db, result.org_ids[7]


# The handler's reads, in `snapshot_reads` order, and the seed's index each one must use.
EXPECTED_INDEXES = [
    ("organizations", ["sqlite_autoindex_organizations_1"]),
    ("branches", ["idx_branches_org_id"]),
    ("billing_periods", ["sqlite_autoindex_billing_periods_2 (org_id=? AND period=?)"]),
    ("storage", ["idx_branches_org_id", "idx_media_objects_branch_id"]),
    ("projects", ["idx_branches_org_id", "idx_projects_branch_id_"]),
    ("notifications", ["idx_branches_org_id", "idx_notifications_branch_id"]),
    ("series", ["idx_branches_org_id", "sqlite_autoindex_invoice_numbers_"]),
]


async def test_the_handlers_reads_use_the_seeds_indexes(seeded: tuple[SqliteDatabase, str]) -> None:
    db, org = seeded
    reads = snapshot_reads(close_event(org, "2026-10"))
    assert len(reads) == len(EXPECTED_INDEXES)
    for statement, (what, indexes) in zip(reads, EXPECTED_INDEXES, strict=True):
        details = await plan_of(db, statement)
        assert full_scans(details) == [], (what, details)
        for index in indexes:
            assert any(index in d for d in details), (what, index, details)


async def test_the_batch_statements_use_primary_keys(seeded: tuple[SqliteDatabase, str]) -> None:
    """The in-batch assertions, the chunked UPDATE and the inserts' SELECTs each find rows by key."""
    db, org = seeded
    _, plan = await prepare_close(db, close_event(org, "2026-10"), NOW)
    touching = [s for s in plan.statements if "FROM" in s.sql or s.sql.startswith("UPDATE")]
    assert len(touching) >= 5  # open-period, series and notification assertions, the UPDATE, the link insert
    for statement in touching:
        details = await plan_of(db, statement)
        assert full_scans(details) == [], (statement.sql, details)
    update = next(s for s in plan.statements if s.sql.startswith("UPDATE notifications"))
    assert any("sqlite_autoindex_notifications_1" in d for d in await plan_of(db, update))


async def test_the_producers_queries_use_indexes(seeded: tuple[SqliteDatabase, str]) -> None:
    db, org = seeded
    page = Statement("SELECT id, config_json, created_at FROM organizations WHERE id > ? ORDER BY id LIMIT ?",
                     ("", 500))
    known = Statement("SELECT dedupe_key FROM event_inbox WHERE dedupe_key IN (?, ?)",
                      (billing_dedupe_key(org, "2026-10"), billing_dedupe_key(org, "2026-09")))
    for statement in (page, known):
        details = await plan_of(db, statement)
        assert full_scans(details) == [], details
        assert any("USING" in d and "INDEX" in d for d in details), details
