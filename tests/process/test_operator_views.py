"""The operator's views of dead letters, as `studiovault` processes: JSON, whole-set counts, times in the
operator's zone, selections by type and reason, and a dry run that changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from events import inbox
from events.envelope import envelope_for, follow_up_of
from events.ids import new_id
from store import Database
from store.sqlite import SqliteDatabase
from tests.support.pipeline import Pipeline
from tests.support.processes import cli, pipeline_env
from tests.support.sample_events import SpendAudited, SpendRecorded

DIED = datetime(2026, 9, 21, 12, 0, tzinfo=UTC)  # 17:30 in Asia/Kolkata


async def _dead(db: Database, event: SpendRecorded | SpendAudited, reason: str, minutes: int,
                parent_id: str | None = None) -> str:
    env = envelope_for(event, org_id=new_id("org"), branch_id=None, dedupe_key=new_id("evt"),
                       correlation_id="LtOperator1", received_at=DIED)
    if parent_id:
        parent = envelope_for(event, org_id=env.org_id, branch_id=None, dedupe_key="p", event_id=parent_id,
                              correlation_id="LtOperator1")
        env = follow_up_of(parent, env, now=DIED)
    at = DIED + timedelta(minutes=minutes)
    await db.batch([inbox.insert(env, at - timedelta(minutes=1)), inbox.mark_dead(env.event_id, reason, at)])
    return env.event_id


async def test_dead_letters_listed_selected_shown_and_replayed_by_type_or_reason(pipeline: Pipeline) -> None:
    db = pipeline.db
    assert isinstance(db, SqliteDatabase)
    client = new_id("cli")
    poisoned = [await _dead(db, SpendRecorded(client_id=client, amount=1), "client_marked_poison: fix it", m)
                for m in (1, 2, 3)]
    root = new_id("evt")
    audited = [await _dead(db, SpendAudited(client_id=client), f"unknown_client: {client}", m, parent_id=root)
               for m in (4, 5)]
    env = pipeline_env(f"sqlite:///{db.path}", pipeline.settings.queue.redis_url)

    page = json.loads(cli(env, "dead", "list", "--json", "--limit", "2").stdout)
    assert (page["total"], page["shown"], page["all_dead"], page["timezone"]) == (5, 2, 5, "Asia/Kolkata")
    assert [e["id"] for e in page["events"]] == [audited[1], audited[0]]  # newest first
    assert page["events"][0]["dead_at"] == "2026-09-21T17:35:00+05:30"
    assert page["events"][0]["correlation_id"] == "LtOperator1"
    assert page["events"][0]["last_error"] == f"unknown_client: {client}"

    typed = json.loads(cli(env, "dead", "list", "--json", "--type", "test.spend_audited", "--tz", "UTC").stdout)
    assert (typed["total"], typed["shown"], typed["all_dead"]) == (2, 2, 5)
    assert typed["events"][0]["dead_at"] == "2026-09-21T12:05:00+00:00"
    table = cli(env, "dead", "list", "--type", "test.*", "--limit", "1").stdout
    assert "showing 1 of 5 with type test.*" in " ".join(table.split())

    shown = json.loads(cli(env, "dead", "show", audited[0]).stdout)
    assert (shown["correlation_id"], shown["causation_id"]) == ("LtOperator1", root)
    assert (shown["dead_at"], shown["created_at"]) == ("2026-09-21T17:34:00+05:30", "2026-09-21T17:33:00+05:30")
    assert shown["payload_json"]["event_id"] == audited[0]

    dry = cli(env, "dead", "replay", "--reason", "unknown_client", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: would replay 2 events; nothing was changed" in dry.stdout
    assert all(event_id in dry.stdout for event_id in audited)
    assert not any(event_id in dry.stdout for event_id in poisoned)
    assert (await db.query("SELECT count(*) AS n FROM event_inbox WHERE status = 'dead'")) == [{"n": 5}]
    assert await pipeline.queue.depth() == 0

    assert cli(env, "dead", "replay", poisoned[0], "--type", "test.spend_recorded").returncode == 2  # not both
    assert cli(env, "dead", "replay").returncode == 2  # nothing selected
    bad_zone = cli(env, "dead", "list", "--tz", "Mars/Olympus_Mons")
    assert bad_zone.returncode == 2
    assert "expected an IANA time zone name" in bad_zone.stderr

    replay = cli(env, "dead", "replay", "--reason", "client_marked_poison")
    assert "replayed 3 of 3 events" in replay.stdout
    statuses = {r["id"]: r["status"] for r in await db.query("SELECT id, status FROM event_inbox")}
    assert statuses == {**dict.fromkeys(poisoned, "pending"), **dict.fromkeys(audited, "dead")}
    assert await pipeline.queue.depth() == 3

    status = json.loads(cli(env, "status", "--json").stdout)
    assert status["inbox"] == {"pending": 3, "dead": 2}
    assert status["as_of"].endswith("+05:30")
    assert status["oldest_pending_since"] == "2026-09-21T17:30:00+05:30"
