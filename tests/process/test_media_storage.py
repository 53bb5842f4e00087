"""Storage usage from media_objects: the figures per org, branch and project, and the indexes used."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from events.ids import new_id
from readmodels import storage
from store import Database, Statement
from store.sqlite import SqliteDatabase
from tests.support.factories import make_tenant


async def _add_project(db: Database, branch_id: str, client_id: str, project_id: str) -> None:
    await db.batch([Statement("INSERT INTO projects (id, branch_id, client_id, status) VALUES (?, ?, ?, 'active')",
                              (project_id, branch_id, client_id))])


async def _media(db: Database, project_id: str, branch_id: str, *sizes: int) -> None:
    await db.batch([
        Statement("INSERT INTO media_objects (id, project_id, branch_id, path, file_type, size_bytes)"
                  " VALUES (?, ?, ?, ?, 'raw', ?)", (new_id("med"), project_id, branch_id, f"p/{i}", size))
        for i, size in enumerate(sizes)
    ])


async def test_usage_is_summed_per_project_branch_and_org(db: Database) -> None:
    t, other = await make_tenant(db), await make_tenant(db)
    second_project = new_id("prj")
    await _add_project(db, t.branch_id, t.client_id, second_project)
    await _media(db, t.project_id, t.branch_id, 52_428_800, 1_048_576)  # 50 MiB + 1 MiB
    await _media(db, second_project, t.branch_id, 7)
    await _media(db, other.project_id, other.branch_id, 999)
    assert await storage.project_usage(db, t.project_id) == storage.Usage(53_477_376, 2)
    assert await storage.project_usage(db, second_project) == storage.Usage(7, 1)
    assert await storage.branch_usage(db, t.branch_id) == storage.Usage(53_477_383, 3)
    assert await storage.org_usage(db, t.org_id) == storage.Usage(53_477_383, 3)
    assert await storage.org_usage(db, other.org_id) == storage.Usage(999, 1)
    assert await storage.project_usage(db, new_id("prj")) == storage.Usage(0, 0)
    rows = await storage.usage_by_project(db, t.org_id)
    assert {(r.branch_id, r.project_id, r.usage.bytes) for r in rows} == {
        (t.branch_id, t.project_id, 53_477_376), (t.branch_id, second_project, 7)}
    assert len(await storage.usage_by_project(db)) == 3


@pytest.mark.parametrize(
    ("sql", "params", "index"),
    [
        (storage.PROJECT_SQL, ("prj",), "SEARCH media_objects USING INDEX idx_media_objects_project_id (project_id=?)"),
        (storage.BRANCH_SQL, ("brn",), "SEARCH media_objects USING INDEX idx_media_objects_branch_id (branch_id=?)"),
        (storage.ORG_PROJECTS_SQL, ("org",), "SEARCH m USING INDEX idx_media_objects_branch_id (branch_id=?)"),
    ],
)
async def test_usage_queries_search_the_seeds_media_objects_indexes(
    schema_db: Database, sql: str, params: tuple[str, ...], index: str
) -> None:
    # EXPLAIN is not a data statement: on D1 it needs the migration token (schema_db), not the application's.
    plan = [str(r["detail"]) for r in await schema_db.query(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert index in plan
    assert not any(step.startswith("SCAN m") for step in plan)


async def test_the_storage_command_prints_usage_per_org_branch_and_project(
    sqlite_db: SqliteDatabase, tmp_path: Path
) -> None:
    t = await make_tenant(sqlite_db)
    await _media(sqlite_db, t.project_id, t.branch_id, 1_572_864, 512)  # 1.5 MiB + 512 B
    env = {**os.environ, "SV_DATABASE_URL": f"sqlite:///{sqlite_db.path}", "SV_LOG_JSON": "false", "COLUMNS": "250"}
    cli = [sys.executable, "-m", "cli", "storage"]

    def run(*args: str) -> str:
        return subprocess.run([*cli, *args], capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout

    as_json = await asyncio.to_thread(run, "--json")
    assert json.loads(as_json) == [{"org_id": t.org_id, "branch_id": t.branch_id, "project_id": t.project_id,
                                           "usage": {"bytes": 1_573_376, "objects": 2}}]
    table = await asyncio.to_thread(run, "--org", t.org_id)
    assert "(org total)" in table
    assert "1573376" in table
    assert "1.5 MiB" in table
