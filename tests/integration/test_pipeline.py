"""The pipeline's guarantees, on a real redis-server, the real arq Worker and a SQLite file."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from events.envelope import envelope_for
from events.inbox import pending_before
from jobqueue.arq_redis import APPLY_JOB
from producers.redrive import redrive
from store import Statement
from tests.support.factories import make_tenant
from tests.support.pipeline import Pipeline
from tests.support.sample_events import SpendRecorded


async def spend(pipeline: Pipeline, client_id: str, amount: int, key: str, **kw: object) -> str:
    t_org = (await pipeline.db.query(
        "SELECT b.org_id, b.id FROM clients c JOIN branches b ON b.id = c.branch_id WHERE c.id = ?", (client_id,)
    ))[0]
    event = SpendRecorded(client_id=client_id, amount=amount, **kw)  # type: ignore[arg-type]
    env = envelope_for(event, org_id=t_org["org_id"], branch_id=t_org["id"], dedupe_key=key)
    return (await pipeline.publisher.publish(env)).event_id


async def total_spend(pipeline: Pipeline, client_id: str) -> float:
    rows = await pipeline.db.query("SELECT total_spend FROM clients WHERE id = ?", (client_id,))
    return float(rows[0]["total_spend"])


async def test_an_event_delivered_three_times_is_applied_once(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    event_id = await spend(pipeline, t.client_id, 5, "k1")
    row = (await pipeline.db.query("SELECT payload_json FROM event_inbox WHERE id = ?", (event_id,)))[0]
    await pipeline.start_worker()
    await pipeline.settle()
    # The inbox row is 'applied' at the unit's commit, a moment before the worker finishes the job and
    # deletes its key; until then Redis refuses the same job id (arq's rule), so wait for that too.
    await pipeline.wait_for(lambda: _job_done(pipeline, event_id), what="the first delivery's job to finish")
    for _ in range(3):  # at-least-once delivery: the same job arrives again
        assert await pipeline.queue.enqueue(row["payload_json"], event_id)
        await pipeline.wait_for(lambda: _job_done(pipeline, event_id), what="the redelivered job to finish")
    assert await total_spend(pipeline, t.client_id) == 5
    assert await pipeline.inbox_status(event_id) == "applied"


async def _job_done(pipeline: Pipeline, job_id: str) -> bool:
    return not await pipeline.redis.exists(f"arq:job:{job_id}") and await pipeline.queue.depth() == 0


async def test_publishing_the_same_dedupe_key_twice_applies_once(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    first = await spend(pipeline, t.client_id, 7, "same-key")
    second_env = envelope_for(SpendRecorded(client_id=t.client_id, amount=7), org_id=t.org_id,
                              branch_id=t.branch_id, dedupe_key="same-key")
    second = await pipeline.publisher.publish(second_env)
    assert second.duplicate
    assert second.event_id == first
    assert not second.enqueued
    assert await pipeline.queue.depth() == 1
    await pipeline.start_worker()
    await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == 7


async def test_flushall_with_events_pending_then_redrive_applies_each_once(
    pipeline: Pipeline, redis: aioredis.Redis
) -> None:
    t = await make_tenant(pipeline.db)
    for i in range(30):
        await spend(pipeline, t.client_id, 1, f"flush-{i}")
    await redis.flushall()  # every queued job is gone; the inbox still has them
    assert await pipeline.queue.depth() == 0
    await pipeline.start_worker()  # the re-drive cron runs at start-up
    await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == 30
    counts = await pipeline.db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status")
    assert counts == [{"status": "applied", "n": 30}]


async def test_redrive_pages_through_more_pending_events_than_one_page(
    pipeline: Pipeline, redis: aioredis.Redis
) -> None:
    t = await make_tenant(pipeline.db)
    page = inspect.signature(pending_before).parameters["limit"].default
    count = 2 * page + 7  # three pages, the last one short
    for i in range(count):
        await spend(pipeline, t.client_id, 1, f"page-{i}")
    await redis.flushall()
    assert await redrive(pipeline.db, pipeline.queue, datetime.now(UTC) + timedelta(seconds=1), timedelta(0)) == (
        count, count)
    assert await pipeline.queue.depth() == count
    await pipeline.start_worker()
    await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == count


async def test_two_workers_applying_conflicting_updates_lose_none(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    with capture_logs() as logs:
        for i in range(40):
            await spend(pipeline, t.client_id, 1, f"race-{i}", pause_ms=5)
        # max_jobs=2 each: otherwise the first worker to poll claims all 40 jobs.
        await pipeline.start_worker(max_jobs=2)
        await pipeline.start_worker(max_jobs=2)
        await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == 40
    applied = [e for e in logs if e["event"] == "event_applied"]
    retries = [e for e in logs if e["event"] == "event_retry"]
    assert len(applied) == 40
    assert retries, "two workers each holding the row for 5 ms between read and write must conflict"
    assert all("VersionConflict" in e["error"] for e in retries)


async def test_a_poison_event_is_dead_lettered_with_its_reason_and_replay_after_a_fix_applies_it(
    pipeline: Pipeline,
) -> None:
    from producers.replay import replay_dead  # noqa: PLC0415

    t = await make_tenant(pipeline.db)
    await pipeline.db.batch([Statement("UPDATE clients SET name = 'poison' WHERE id = ?", (t.client_id,))])
    event_id = await spend(pipeline, t.client_id, 9, "poison-1")
    await pipeline.start_worker()
    await pipeline.settle()
    row = (await pipeline.db.query("SELECT status, last_error, attempts, dead_at FROM event_inbox WHERE id = ?",
                                   (event_id,)))[0]
    assert row["status"] == "dead"
    assert row["last_error"].startswith("client_marked_poison")
    assert row["attempts"] == 1
    assert row["dead_at"]
    assert await total_spend(pipeline, t.client_id) == 0
    await pipeline.db.batch([Statement("UPDATE clients SET name = 'fixed' WHERE id = ?", (t.client_id,))])
    assert await replay_dead(pipeline.db, pipeline.publisher, [event_id]) == 1
    await pipeline.settle()
    assert await pipeline.inbox_status(event_id) == "applied"
    assert await total_spend(pipeline, t.client_id) == 9


async def test_failures_retry_with_backoff_then_dead_letter_after_max_attempts(pipeline: Pipeline) -> None:
    """An event whose handler keeps failing (an error no rule calls permanent) is parked after max_attempts."""
    t = await make_tenant(pipeline.db, client_name="flaky")
    event_id = await spend(pipeline, t.client_id, 3, "retry-1")
    with capture_logs() as logs:
        await pipeline.start_worker()
        await pipeline.settle()
    row = (await pipeline.db.query("SELECT status, last_error, attempts FROM event_inbox WHERE id = ?", (event_id,)))[0]
    assert row["status"] == "dead"
    assert row["attempts"] == 4  # settings.max_attempts in the test settings
    assert "retries exhausted after 4 attempts" in row["last_error"]
    assert [e["failures"] for e in logs if e["event"] == "event_retry"] == [1, 2, 3]


async def test_a_database_outage_spends_no_failure_budget_and_work_resumes_when_it_ends(pipeline: Pipeline) -> None:
    """Transient database errors (D1 unreachable, overloaded, "Network connection lost") are not the event's
    fault: retried within seconds, never dead-lettered, logged once per outage, applied once it ends."""
    t = await make_tenant(pipeline.db)
    event_id = await spend(pipeline, t.client_id, 3, "outage-1")
    outage = _Outage(failures=12)
    with capture_logs() as logs:
        await pipeline.start_worker(customize=outage.install)
        await pipeline.settle(within=60)
    row = (await pipeline.db.query("SELECT status, attempts FROM event_inbox WHERE id = ?", (event_id,)))[0]
    assert (row["status"], row["attempts"]) == ("applied", 1)  # the one successful attempt; no failure counted
    assert outage.failed == 12
    assert await total_spend(pipeline, t.client_id) == 3
    events = [e["event"] for e in logs]
    assert events.count("database_unavailable") == 1
    assert events.count("database_recovered") == 1
    assert "event_dead_lettered" not in events


@pytest.mark.parametrize(("conflicts", "outcome"), [(2, "applied"), (9, "dead")])
async def test_the_conflict_cap_counts_version_conflicts_not_every_retry(
    pipeline: Pipeline, conflicts: int, outcome: str
) -> None:
    """12 retries for a database outage, then version conflicts: the cap (3 here) is reached by conflicts
    alone, so 2 leave the event to be applied and only a fourth parks it, with the count in its reason."""
    pipeline.settings = pipeline.settings.replace(max_conflict_retries=3)
    t = await make_tenant(pipeline.db)
    event_id = await spend(pipeline, t.client_id, 3, "conflicts-1")
    outage = _Outage(failures=12, conflicts=conflicts)
    await pipeline.start_worker(customize=outage.install)
    await pipeline.settle(within=60)
    row = (await pipeline.db.query("SELECT status, last_error FROM event_inbox WHERE id = ?", (event_id,)))[0]
    assert row["status"] == outcome
    assert outage.failed == 12 + min(conflicts, 4)
    if outcome == "dead":
        assert row["last_error"] == "retries exhausted after 4 version conflicts"
        assert await total_spend(pipeline, t.client_id) == 0
    else:
        assert await total_spend(pipeline, t.client_id) == 3


async def test_a_database_that_hangs_past_the_job_deadline_spends_no_failure_budget(pipeline: Pipeline) -> None:
    """A batch that never answers (a D1 brownout) is cut at the unit of work's deadline and retried like an
    unreachable database: 6 hangs with a failure budget of 4, and the event is still applied."""
    pipeline.settings = pipeline.settings.replace(job_timeout=1.0)
    t = await make_tenant(pipeline.db)
    event_id = await spend(pipeline, t.client_id, 3, "hangs-1")
    outage = _Outage(failures=0, hangs=6)
    await pipeline.start_worker(customize=outage.install)
    await pipeline.settle(within=60)
    row = (await pipeline.db.query("SELECT status, attempts FROM event_inbox WHERE id = ?", (event_id,)))[0]
    assert (row["status"], row["attempts"], outage.failed) == ("applied", 1, 6)
    assert await total_spend(pipeline, t.client_id) == 3


class _Outage:
    """The real database for reads; the first `hangs` write batches never answer, the first `failures`
    fail as an unreachable D1 would, the next `conflicts` as a concurrent writer's change would."""

    def __init__(self, failures: int, conflicts: int = 0, hangs: int = 0) -> None:
        self.failures, self.conflicts, self.hangs, self.failed = failures, conflicts, hangs, 0

    def install(self, deps):  # type: ignore[no-untyped-def]
        from dataclasses import replace  # noqa: PLC0415

        from store import TransientError, VersionConflict  # noqa: PLC0415

        outage = self

        class FailingDb:
            def __init__(self, inner):  # type: ignore[no-untyped-def]
                self.inner = inner

            def __getattr__(self, name):  # type: ignore[no-untyped-def]
                return getattr(self.inner, name)

            async def batch(self, statements):  # type: ignore[no-untyped-def]
                if outage.failed < outage.hangs and len(statements) > 1:
                    outage.failed += 1
                    await asyncio.sleep(3600)  # cut by the unit of work's deadline
                if outage.failed < outage.failures:
                    outage.failed += 1
                    raise TransientError("D1 bridge /batch: ConnectError: All connection attempts failed")
                if outage.failed < outage.failures + outage.conflicts and len(statements) > 1:  # not mark_dead
                    outage.failed += 1
                    raise VersionConflict("clients row changed by another writer")
                return await self.inner.batch(statements)

        return replace(deps, db=FailingDb(deps.db))


async def test_follow_up_events_are_recorded_in_the_same_batch_and_applied(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    event_id = await spend(pipeline, t.client_id, 2, "with-follow-up", follow_up=True)
    await pipeline.start_worker()
    await pipeline.settle()
    rows = await pipeline.db.query("SELECT type, status, dedupe_key FROM event_inbox ORDER BY created_at, type")
    assert {(r["type"], r["status"]) for r in rows} == {("test.spend_recorded", "applied"),
                                                         ("test.spend_audited", "applied")}
    assert {r["dedupe_key"] for r in rows} == {"with-follow-up", f"audit:{event_id}"}
    audits = await pipeline.db.query("SELECT event_type FROM audit_logs")
    assert audits == [{"event_type": "test.spend_audited"}]


async def test_invalid_payload_is_dead_lettered_with_field_errors(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    env = envelope_for(SpendRecorded(client_id=t.client_id, amount=1), org_id=t.org_id, branch_id=t.branch_id,
                       dedupe_key="bad")
    bad = env.model_copy(update={"payload": {"client_id": t.client_id, "amount": -4, "surprise": True}})
    await pipeline.publisher.publish(bad)
    await pipeline.start_worker()
    await pipeline.settle()
    row = (await pipeline.db.query("SELECT status, last_error FROM event_inbox WHERE id = ?", (bad.event_id,)))[0]
    assert row["status"] == "dead"
    assert "amount: Input should be greater than 0" in row["last_error"]
    assert "surprise: Extra inputs are not permitted" in row["last_error"]


async def test_jobs_on_the_wire_are_json_not_pickle(pipeline: Pipeline, redis: aioredis.Redis) -> None:
    t = await make_tenant(pipeline.db)
    event_id = await spend(pipeline, t.client_id, 1, "wire")
    raw = await redis.get(f"arq:job:{event_id}")
    job = json.loads(raw)
    assert job["f"] == APPLY_JOB
    assert json.loads(job["a"][0])["event_id"] == event_id


async def test_a_pickled_job_is_refused_and_never_unpickled(pipeline: Pipeline, redis: aioredis.Redis) -> None:
    import pickle  # noqa: PLC0415

    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (exec, ("import pathlib; pathlib.Path('/tmp/sv-pwned').write_text('x')",))

    payload = pickle.dumps({"t": 1, "f": APPLY_JOB, "a": [Boom()], "k": {}, "et": 0})
    await redis.psetex("arq:job:evil", 60_000, payload)
    await redis.zadd(pipeline.settings.queue.queue_name, {"evil": 1})  # arq reads a score of 0 as "not queued"
    await pipeline.start_worker()
    await pipeline.wait_for(lambda: _job_done(pipeline, "evil"), what="the bad job to be dropped")
    await asyncio.sleep(0.1)
    assert not os.path.exists("/tmp/sv-pwned")  # noqa: S108, ASYNC240 - the path the exploit would write


@pytest.mark.parametrize("field", ["event_id", "org_id"])
async def test_envelopes_with_invalid_ids_are_refused(field: str) -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from events.envelope import Envelope  # noqa: PLC0415

    good = envelope_for(SpendRecorded(client_id="cli_01a2101d-abe5-750c-a3eb-7a47c0c52bed", amount=1),
                        org_id="org_01a2101d-abe5-750c-a3eb-7a47c0c52bed", branch_id=None, dedupe_key="x")
    data = good.model_dump(mode="json") | {field: "not-an-id"}
    with pytest.raises(ValidationError, match="must look like"):
        Envelope.model_validate(data)


async def test_republishing_an_envelope_whose_enqueue_was_lost_queues_it_again(
    pipeline: Pipeline, redis: aioredis.Redis
) -> None:
    """A producer (or an adapter) retrying the same publish after a lost answer: queued, applied once."""
    t = await make_tenant(pipeline.db)
    env = envelope_for(SpendRecorded(client_id=t.client_id, amount=4), org_id=t.org_id, branch_id=t.branch_id,
                       dedupe_key="retried-publish")
    await pipeline.publisher.publish(env)
    await redis.flushall()  # the enqueue is lost; the inbox row is durable
    again = await pipeline.publisher.publish(env)
    assert again.duplicate
    assert again.enqueued
    await pipeline.start_worker()
    await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == 4


async def test_a_redelivery_with_a_new_envelope_queues_the_first_event_whose_enqueue_was_lost(
    pipeline: Pipeline, redis: aioredis.Redis
) -> None:
    """A gateway's retry is a new envelope (new event id) with the same dedupe key: it makes sure the FIRST
    event is queued at once, without waiting for the re-drive."""
    t = await make_tenant(pipeline.db)
    first = await spend(pipeline, t.client_id, 5, "gateway:event:evt_redelivered")
    await redis.flushall()  # the first enqueue is lost
    redelivery = envelope_for(SpendRecorded(client_id=t.client_id, amount=5), org_id=t.org_id,
                              branch_id=t.branch_id, dedupe_key="gateway:event:evt_redelivered")
    assert redelivery.event_id != first
    again = await pipeline.publisher.publish(redelivery)
    assert (again.duplicate, again.event_id, again.enqueued) == (True, first, True)
    assert await redis.zscore(pipeline.settings.queue.queue_name, first) is not None  # queued, by its own id
    assert await pipeline.inbox_status(redelivery.event_id) is None  # the redelivery itself is not recorded
    await pipeline.start_worker()
    await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == 5
