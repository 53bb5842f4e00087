"""Media events through the real unit of work, on both database adapters (SQLite file and D1)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from events.envelope import envelope_for
from events.ids import new_id
from events.media import MediaUploaded
from events.media_keys import build_key
from handlers.audit import system_user_id
from store import Database
from tests.support.factories import make_tenant
from tests.support.media import Applier, applier, at, deleted, envelope, key_for, media_rows, uploaded


@pytest.fixture
async def media(db: Database, redis_url: str, redis: aioredis.Redis) -> AsyncIterator[Applier]:
    async with applier(db, redis_url) as a:
        yield a


async def test_an_upload_inserts_one_row_and_announcing_it_again_changes_nothing(media: Applier) -> None:
    db = media.deps.db
    t = await make_tenant(db)
    event = uploaded(t, at(0.123), 2_000_000, "aa", file_type="proxy")
    assert await media.apply(envelope(event, "first")) == "applied"
    assert await media.apply(envelope(event, "same object, announced again")) == "ignored"
    (row,) = await media_rows(db, t.project_id)
    assert row["path"] == key_for(t, "proxy")
    assert (row["file_type"], row["size_bytes"], row["watermark_state"]) == ("proxy", 2_000_000, "proof")
    assert row["uploaded_at"] == 1_789_984_800_123
    assert row["version"] == 1


async def test_a_newer_upload_of_the_same_key_updates_size_and_bumps_version(media: Applier) -> None:
    db = media.deps.db
    t = await make_tenant(db)
    await media.apply(envelope(uploaded(t, at(0), 1_000, "aa"), "v1"))
    (first,) = await media_rows(db, t.project_id)
    await media.apply(envelope(uploaded(t, at(60), 4_500, "bb"), "v2"))
    (row,) = await media_rows(db, t.project_id)
    assert (row["id"], row["size_bytes"], row["version"]) == (first["id"], 4_500, 2)


async def test_duplicate_and_reordered_notifications_for_one_key_converge(media: Applier) -> None:
    """Every order of create(t=0) → delete(t=10) → re-create(t=20), each delivered twice, ends the same:
    one row with the re-created object's size."""
    db = media.deps.db
    t = await make_tenant(db)
    for n, order in enumerate(itertools.permutations(["create", "delete", "recreate"])):
        name = f"perm-{n}.jpg"
        events = {
            "create": uploaded(t, at(0), 1_000, "aa", name=name),
            "delete": deleted(t, at(10), name=name),
            "recreate": uploaded(t, at(20), 3_000, "bb", name=name),
        }
        for step in (*order, *order):  # then every notification again
            await media.apply(envelope(events[step], new_id("evt")))
        rows = [r for r in await media_rows(db, t.project_id) if r["path"].endswith(name)]
        assert [(r["size_bytes"], r["uploaded_at"]) for r in rows] == [(3_000, 1_789_984_820_000)], order
    states = await db.query("SELECT state, etag, event_time FROM media_keys WHERE project_id = ?", (t.project_id,))
    assert {(s["state"], s["etag"], s["event_time"]) for s in states} == {("present", "bb", 1_789_984_820_000)}


@pytest.mark.parametrize("order", [("create", "delete"), ("delete", "create")])
async def test_a_delete_that_arrives_before_its_create_still_leaves_no_row(
    media: Applier, order: tuple[str, str]
) -> None:
    db = media.deps.db
    t = await make_tenant(db)
    events = {"create": uploaded(t, at(0), 1_000, "aa"), "delete": deleted(t, at(5))}
    outcomes = [await media.apply(envelope(events[step], step)) for step in order]
    assert await media_rows(db, t.project_id) == []
    (state,) = await db.query("SELECT state, media_id, event_time FROM media_keys WHERE path = ?", (key_for(t),))
    assert (state["state"], state["media_id"], state["event_time"]) == ("deleted", None, 1_789_984_805_000)
    assert outcomes == (["applied", "applied"] if order[0] == "create" else ["applied", "ignored"])


async def test_deleting_a_row_writes_an_audit_row_by_the_orgs_system_user(media: Applier) -> None:
    db = media.deps.db
    t = await make_tenant(db)
    await media.apply(envelope(uploaded(t, at(0), 1_000, "aa"), "c"))
    (row,) = await media_rows(db, t.project_id)
    await media.apply(envelope(deleted(t, at(5)), "d"))
    (audit,) = await db.query("SELECT org_id, branch_id, actor_user_id, event_type, payload_json FROM audit_logs")
    assert (audit["org_id"], audit["branch_id"], audit["event_type"]) == (t.org_id, t.branch_id, "media.deleted")
    assert audit["actor_user_id"] == system_user_id(t.org_id)
    assert row["id"] in audit["payload_json"]
    (user,) = await db.query("SELECT org_id, roles_json FROM users WHERE id = ?", (system_user_id(t.org_id),))
    assert (user["org_id"], user["roles_json"]) == (t.org_id, '["system"]')


async def test_unknown_projects_and_cross_tenant_events_are_dead_lettered_with_the_reason(media: Applier) -> None:
    db = media.deps.db
    mine, theirs = await make_tenant(db), await make_tenant(db)
    ghost = new_id("prj")
    unknown = MediaUploaded(org_id=mine.org_id, branch_id=mine.branch_id, project_id=ghost, bucket="b",
                            key=build_key(mine.org_id, mine.branch_id, ghost, "delivery", "x.jpg"),
                            file_type="delivery", size_bytes=5, etag="e", event_time=at(0))
    # Their project, under my org and branch in the key.
    foreign_project = MediaUploaded(org_id=mine.org_id, branch_id=mine.branch_id, project_id=theirs.project_id,
                                    bucket="b", key=build_key(mine.org_id, mine.branch_id, theirs.project_id,
                                                              "delivery", "x.jpg"),
                                    file_type="delivery", size_bytes=5, etag="e", event_time=at(0))
    # Their branch under my org: the branch belongs to another org.
    foreign_branch = MediaUploaded(org_id=mine.org_id, branch_id=theirs.branch_id, project_id=theirs.project_id,
                                   bucket="b", key=build_key(mine.org_id, theirs.branch_id, theirs.project_id,
                                                             "delivery", "x.jpg"),
                                   file_type="delivery", size_bytes=5, etag="e", event_time=at(0))
    # The right key, published on behalf of another org.
    wrong_envelope = envelope(uploaded(mine, at(0), 5, "e"), "wrong-env", org_id=theirs.org_id,
                              branch_id=theirs.branch_id)
    cases = [
        (envelope_for(unknown, org_id=mine.org_id, branch_id=mine.branch_id, dedupe_key="u"), "unknown_project"),
        (envelope_for(foreign_project, org_id=mine.org_id, branch_id=mine.branch_id, dedupe_key="fp"), "wrong_tenant"),
        (envelope_for(foreign_branch, org_id=mine.org_id, branch_id=theirs.branch_id, dedupe_key="fb"),
         "wrong_tenant"),
        (wrong_envelope, "wrong_tenant"),
    ]
    for env, reason in cases:
        assert await media.apply(env) == "dead"
        row = await media.inbox(env.event_id)
        assert row["status"] == "dead"
        assert row["last_error"].startswith(reason), row["last_error"]
    assert await db.query("SELECT id FROM media_objects") == []
    assert await db.query("SELECT path FROM media_keys") == []
    assert await db.query("SELECT id FROM event_inbox WHERE type = 'notification.due'") == []


async def test_the_first_delivery_upload_of_a_project_asks_for_one_photos_ready(media: Applier) -> None:
    db = media.deps.db
    t, other = await make_tenant(db), await make_tenant(db)
    await media.apply(envelope(uploaded(t, at(0), 10, "p", file_type="proxy", name="a.jpg"), "proxy"))
    assert await db.query("SELECT id FROM event_inbox WHERE type = 'notification.due'") == []
    for i in range(3):
        await media.apply(envelope(uploaded(t, at(i), 10, f"e{i}", name=f"d{i}.jpg"), f"d{i}"))
    await media.apply(envelope(uploaded(other, at(0), 10, "o", name="o.jpg"), "other"))
    rows = await db.query("SELECT dedupe_key, org_id, branch_id FROM event_inbox WHERE type = 'notification.due'"
                          " ORDER BY dedupe_key")
    assert sorted((r["dedupe_key"], r["org_id"]) for r in rows) == sorted([
        (f"notify:photos_ready:{t.project_id}", t.org_id), (f"notify:photos_ready:{other.project_id}", other.org_id)])
