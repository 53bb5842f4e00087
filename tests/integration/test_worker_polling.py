"""When a worker looks at its queue (`PipelineWorker.main`), on a real Redis. Idle workers are woken by
the ingress's enqueues (`workers.wake`): an event is applied long before the worker's next poll would
have found it, and waking survives its connection being cut. A worker whose every slot was taken
polls again as soon as one frees. Each worker here polls only every few seconds, so only a wake-up or
a freed slot can explain an event started within a fraction of that."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from arq.constants import in_progress_key_prefix

from events.envelope import envelope_for
from events.publish import Publisher
from jobqueue.arq_redis import wake_channel
from jobqueue.grouped import GroupedQueue
from store import Statement
from tests.support.factories import make_tenant
from tests.support.pipeline import Pipeline
from tests.support.sample_events import SpendRecorded
from workers.deps import Deps
from workers.lifecycle import PipelineWorker

SLOW_POLL_S = 5.0
WOKEN_WITHIN_S = 2.0


async def _subscribed(worker: PipelineWorker) -> None:
    async with asyncio.timeout(10):
        while worker.wake is None:  # noqa: ASYNC110 - set by the worker task, no event to wait on
            await asyncio.sleep(0.01)
        await worker.wake.subscribed.wait()
    await asyncio.sleep(0.1)  # the worker's first poll is behind it: it now waits up to SLOW_POLL_S


async def _publish_as_the_ingress_does(pipeline: Pipeline, client_id: str, key: str) -> str:
    """Publisher → GroupedQueue → ArqQueue.enqueue_many: the ingress's composition (`bootstrap.ingress`)."""
    t = (await pipeline.db.query(
        "SELECT b.org_id, b.id FROM clients c JOIN branches b ON b.id = c.branch_id WHERE c.id = ?", (client_id,)))[0]
    publisher = Publisher(pipeline.db, GroupedQueue(pipeline.queue))
    env = envelope_for(SpendRecorded(client_id=client_id, amount=3), org_id=t["org_id"], branch_id=t["id"],
                       dedupe_key=key)
    return (await publisher.publish(env)).event_id


async def _applied_within(pipeline: Pipeline, event_id: str) -> float:
    started = time.monotonic()
    await pipeline.wait_for(lambda: _applied(pipeline, event_id), within=SLOW_POLL_S * 3, what="the event applied")
    return time.monotonic() - started


async def _applied(pipeline: Pipeline, event_id: str) -> bool:
    return await pipeline.inbox_status(event_id) == "applied"


async def test_an_enqueued_event_wakes_an_idle_worker(pipeline: Pipeline) -> None:
    pipeline.settings = pipeline.settings.replace(poll_delay=SLOW_POLL_S)
    t = await make_tenant(pipeline.db)
    worker = await pipeline.start_worker()
    await _subscribed(worker)
    for i in range(3):  # each time the worker is back to waiting for its next poll
        event_id = await _publish_as_the_ingress_does(pipeline, t.client_id, f"wake-{i}")
        assert await _applied_within(pipeline, event_id) < WOKEN_WITHIN_S


async def test_waking_survives_its_connection_being_cut(pipeline: Pipeline, redis: aioredis.Redis) -> None:
    pipeline.settings = pipeline.settings.replace(poll_delay=SLOW_POLL_S)
    t = await make_tenant(pipeline.db)
    worker = await pipeline.start_worker()
    await _subscribed(worker)
    assert worker.wake is not None
    killed = await redis.client_kill_filter(_type="pubsub")  # what a Redis restart does to the subscription
    assert killed >= 1
    async with asyncio.timeout(10):  # it subscribes again by itself
        while not worker.wake.subscribed.is_set() or await _subscribers(redis, pipeline) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    event_id = await _publish_as_the_ingress_does(pipeline, t.client_id, "after-cut")
    assert await _applied_within(pipeline, event_id) < WOKEN_WITHIN_S


async def test_without_a_wake_up_the_poll_still_finds_the_event(pipeline: Pipeline) -> None:
    """arq's own enqueue announces nothing: the event waits for the next poll, and is applied then."""
    pipeline.settings = pipeline.settings.replace(poll_delay=1.0)
    t = await make_tenant(pipeline.db)
    worker = await pipeline.start_worker()
    await _subscribed(worker)
    org = (await pipeline.db.query("SELECT org_id FROM clients c JOIN branches b ON b.id = c.branch_id"
                                   " WHERE c.id = ?", (t.client_id,)))[0]["org_id"]
    env = envelope_for(SpendRecorded(client_id=t.client_id, amount=3), org_id=org, branch_id=t.branch_id,
                       dedupe_key="no-wake")
    event_id = (await pipeline.publisher.publish(env)).event_id  # Publisher → ArqQueue.enqueue (arq's)
    assert await _applied_within(pipeline, event_id) < 1.0 + WOKEN_WITHIN_S


async def _subscribers(redis: aioredis.Redis, pipeline: Pipeline) -> int:
    """Subscribers to the queue's wake channel, as Redis counts them."""
    return int((await redis.pubsub_numsub(wake_channel(pipeline.settings.queue.queue_name)))[0][1])


class _SlowWrites:
    """The real database; each write batch is held `seconds` first (a slow unit of work), and when each
    batch returned is recorded (unix time)."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.returned: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        await asyncio.sleep(self.seconds)
        try:
            return list(await self.inner.batch(statements))
        finally:
            self.returned.append(time.time())


async def test_a_worker_with_every_slot_taken_polls_again_as_soon_as_one_frees(pipeline: Pipeline) -> None:
    """arq's poll does not read the queue while every slot is taken; the worker then polls again when a
    job ends, not a whole `poll_delay` later. The second event is enqueued with arq's own enqueue (no
    wake-up) while the only slot is busy."""
    pipeline.settings = pipeline.settings.replace(poll_delay=3.0, max_jobs=1)
    t = await make_tenant(pipeline.db)
    slow: list[_SlowWrites] = []

    def install(deps: Deps) -> Deps:
        slow.append(_SlowWrites(deps.db, 0.5))
        return dataclasses.replace(deps, db=slow[0])

    first = await _publish_as_the_ingress_does(pipeline, t.client_id, "first")
    await pipeline.start_worker(customize=install)
    await pipeline.wait_for(lambda: _claimed(pipeline, first), within=10, what="the first event to start")
    second = await pipeline.publisher.publish(envelope_for(  # arq's enqueue_job: announces nothing
        SpendRecorded(client_id=t.client_id, amount=4), org_id=t.org_id, branch_id=t.branch_id, dedupe_key="second"))
    await pipeline.wait_for(lambda: _applied(pipeline, second.event_id), within=10, what="the second event")
    rows = await pipeline.db.query("SELECT applied_at FROM event_inbox WHERE id = ?", (second.event_id,))
    gap = int(rows[0]["applied_at"]) / 1000 - slow[0].returned[0]  # its unit of work began, after the first ended
    assert gap < 1.0, f"the second event began {gap:.2f} s after the first ended (poll_delay 3 s)"


async def _claimed(pipeline: Pipeline, event_id: str) -> bool:
    return bool(await pipeline.redis.exists(in_progress_key_prefix + event_id))
