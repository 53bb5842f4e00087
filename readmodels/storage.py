"""Storage usage: bytes per org, branch and project, computed from `media_objects.size_bytes` (the
seed: "Storage usage is computed from media_objects size_bytes truth"). Used by billing and the CLI.

Every query is driven by the seed's indexes: a branch's or a project's rows are found through
`idx_media_objects_branch_id` / `idx_media_objects_project_id`, and an org's through
`idx_branches_org_id` and then `idx_media_objects_branch_id` (tested with EXPLAIN QUERY PLAN).
"""

from __future__ import annotations

from dataclasses import dataclass

from store import Database
from store.port import Row

BRANCH_SQL = "SELECT count(*) AS objects, coalesce(sum(size_bytes), 0) AS bytes FROM media_objects WHERE branch_id = ?"
PROJECT_SQL = ("SELECT count(*) AS objects, coalesce(sum(size_bytes), 0) AS bytes FROM media_objects"
               " WHERE project_id = ?")
# Per project within an org (org → its branches → their media rows), with each project's branch.
ORG_PROJECTS_SQL = (
    "SELECT b.org_id, m.branch_id, m.project_id, count(*) AS objects, sum(m.size_bytes) AS bytes"
    " FROM branches b JOIN media_objects m ON m.branch_id = b.id WHERE b.org_id = ?"
    " GROUP BY m.branch_id, m.project_id ORDER BY m.branch_id, m.project_id"
)
# Every org (the CLI's default view): a full pass over media_objects, grouped.
ALL_PROJECTS_SQL = (
    "SELECT b.org_id, m.branch_id, m.project_id, count(*) AS objects, sum(m.size_bytes) AS bytes"
    " FROM media_objects m JOIN branches b ON b.id = m.branch_id"
    " GROUP BY b.org_id, m.branch_id, m.project_id ORDER BY b.org_id, m.branch_id, m.project_id"
)


@dataclass(frozen=True)
class Usage:
    bytes: int
    objects: int


@dataclass(frozen=True)
class ProjectUsage:
    org_id: str
    branch_id: str
    project_id: str
    usage: Usage


async def project_usage(db: Database, project_id: str) -> Usage:
    return _usage((await db.query(PROJECT_SQL, (project_id,)))[0])


async def branch_usage(db: Database, branch_id: str) -> Usage:
    return _usage((await db.query(BRANCH_SQL, (branch_id,)))[0])


async def org_usage(db: Database, org_id: str) -> Usage:
    """An org's total: the sum of its projects' usage."""
    return total(await usage_by_project(db, org_id))


async def usage_by_project(db: Database, org_id: str | None = None) -> list[ProjectUsage]:
    """One row per project that stores anything, for one org or (None) every org."""
    rows = await (db.query(ORG_PROJECTS_SQL, (org_id,)) if org_id else db.query(ALL_PROJECTS_SQL))
    return [ProjectUsage(str(r["org_id"]), str(r["branch_id"]), str(r["project_id"]), _usage(r)) for r in rows]


def total(rows: list[ProjectUsage]) -> Usage:
    return Usage(sum(r.usage.bytes for r in rows), sum(r.usage.objects for r in rows))


def _usage(row: Row) -> Usage:
    return Usage(int(row["bytes"] or 0), int(row["objects"]))
