"""Media handlers: an R2 object created or deleted becomes (or stops being) a `media_objects` row.

Each handler reads what it needs in one round trip, checks the tenant (`plan.check_tenant`), and hands
the facts to a pure planner (`handlers.media.plan`). The object key layout is documented in
`events.media_keys`; the ordering rule for duplicate and reordered notifications in `handlers.media.plan`.
"""

from __future__ import annotations

from events.ids import new_id
from events.media import MediaDeleted, MediaUploaded
from handlers.base import HandlerContext, Plan
from handlers.media.plan import (
    KeyState,
    MediaFacts,
    MediaRow,
    ProjectRow,
    check_tenant,
    plan_delete,
    plan_upload,
)
from store import Database

# One statement, one round trip: the project with its org, the key's last applied notification and the
# key's media row. (One statement rather than `query_many`: the SQLite adapter's multi-statement read
# opens a transaction on its shared reader connection, which concurrent jobs in one worker collide on.)
FACTS_SQL = (
    "SELECT p.id AS project_id, p.branch_id, b.org_id,"
    " k.media_id, k.state, k.event_time, k.etag, k.version AS key_version, m.id AS row_id, m.version AS row_version"
    " FROM (SELECT ? AS project_id, ? AS path) q"
    " LEFT JOIN projects p ON p.id = q.project_id"
    " LEFT JOIN branches b ON b.id = p.branch_id"
    " LEFT JOIN media_keys k ON k.path = q.path"
    " LEFT JOIN media_objects m ON m.project_id = q.project_id AND m.path = q.path"
    " ORDER BY m.id LIMIT 1"
)


async def read_facts(db: Database, project_id: str, key: str) -> MediaFacts:
    """What the planner needs about `key` in `project_id`."""
    (row,) = await db.query(FACTS_SQL, (project_id, key))
    project = None
    if row["project_id"] is not None:
        project = ProjectRow(str(row["project_id"]), str(row["branch_id"]), str(row["org_id"]))
    state = None
    if row["state"] is not None:
        state = KeyState(row["media_id"], str(row["state"]), int(row["event_time"]), str(row["etag"]),
                         int(row["key_version"]))
    media = MediaRow(str(row["row_id"]), int(row["row_version"])) if row["row_id"] is not None else None
    return MediaFacts(project, state, media)


async def record_media_uploaded(event: MediaUploaded, ctx: HandlerContext) -> Plan:
    facts = await read_facts(ctx.db, event.project_id, event.key)
    check_tenant(event, ctx.envelope.org_id, ctx.envelope.branch_id, facts)
    return plan_upload(event, facts, ctx.now, media_id=new_id("med"), notification_id=new_id("ntf"))


async def remove_deleted_media(event: MediaDeleted, ctx: HandlerContext) -> Plan:
    facts = await read_facts(ctx.db, event.project_id, event.key)
    check_tenant(event, ctx.envelope.org_id, ctx.envelope.branch_id, facts)
    return plan_delete(event, facts, ctx.now, audit_id=new_id("aud"))
