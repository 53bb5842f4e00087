"""Stopping a worker: running jobs get a grace period, nothing is lost, nothing is left open.

arq's own `Worker.close()` re-raises the CancelledError of a job it cancelled; that skipped
`on_shutdown` (database and HTTP client left open) and, in the test harness, broke pytest's fixture
teardown. These tests pin the behaviour of `workers.worker.stop_worker`, which production and the
harness both use.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from bootstrap.worker import load_router, worker_settings
from tests.integration.test_pipeline import spend, total_spend
from tests.support.factories import make_tenant
from tests.support.pipeline import Pipeline
from tests.support.processes import json_logs, pipeline_env, worker_process
from workers.lifecycle import PipelineWorker, stop_worker


async def _in_progress(pipeline: Pipeline, event_id: str) -> bool:
    return bool(await pipeline.redis.exists(f"arq:in-progress:{event_id}"))


async def test_stopping_busy_workers_at_any_moment_raises_nothing_and_loses_nothing(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    # A job cancelled before arq's own try block keeps its in-progress key for job_timeout + 10 s.
    pipeline.settings = pipeline.settings.replace(job_timeout=1.0)
    published = 0
    for round_ in range(40):  # stop at a different moment of start-up, polling or job each round
        worker = PipelineWorker(**worker_settings(pipeline.settings, load_router("tests.support.sample_events:ROUTER")),
                                handle_signals=False)
        task = asyncio.create_task(worker.async_run())
        for i in range(10):
            await spend(pipeline, t.client_id, 1, f"r{round_}-{i}")
            published += 1
        await asyncio.sleep(0.002 * (round_ % 25))
        await stop_worker(worker, grace=10)  # must not raise or leak, whatever the worker was doing
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert worker.tasks == {}
    await pipeline.start_worker()
    await pipeline.settle(within=60)
    assert await total_spend(pipeline, t.client_id) == published
    assert await pipeline.db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status") == [
        {"status": "applied", "n": published}]


async def test_a_running_job_finishes_within_the_grace_and_no_new_job_is_picked(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    worker = await pipeline.start_worker()
    first = await spend(pipeline, t.client_id, 5, "slow", pause_ms=400)
    await pipeline.wait_for(lambda: _in_progress(pipeline, first), what="the slow job to start")
    stopping = asyncio.create_task(stop_worker(worker, grace=10))
    await asyncio.sleep(0)  # the worker has stopped picking jobs
    second = await spend(pipeline, t.client_id, 7, "after-stop")
    await stopping
    assert await pipeline.inbox_status(first) == "applied"
    assert await pipeline.inbox_status(second) == "pending"
    assert await total_spend(pipeline, t.client_id) == 5
    await pipeline.stop_workers()
    await pipeline.start_worker()
    await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == 12


async def test_a_job_outliving_the_grace_is_cancelled_uncommitted_and_runs_again(pipeline: Pipeline) -> None:
    t = await make_tenant(pipeline.db)
    worker = await pipeline.start_worker()
    slow = await spend(pipeline, t.client_id, 5, "too-slow", pause_ms=1500)
    await pipeline.wait_for(lambda: _in_progress(pipeline, slow), what="the slow job to start")
    await stop_worker(worker, grace=0.1)
    assert await pipeline.inbox_status(slow) == "pending"
    assert await total_spend(pipeline, t.client_id) == 0
    await pipeline.stop_workers()
    await pipeline.start_worker()
    await pipeline.settle()
    assert await total_spend(pipeline, t.client_id) == 5
    assert await pipeline.inbox_status(slow) == "applied"


@pytest.mark.slow
async def test_sigterm_lets_the_running_job_finish_and_the_process_exits_cleanly(
    pipeline: Pipeline, redis_url: str, tmp_path: Path
) -> None:
    t = await make_tenant(pipeline.db)
    env = pipeline_env(f"sqlite:///{pipeline.settings.database.database_url.removeprefix('sqlite:///')}", redis_url,
                       SV_SHUTDOWN_GRACE="10", SV_JOB_TIMEOUT="10")
    log = tmp_path / "worker.log"
    slow = await spend(pipeline, t.client_id, 5, "slow", pause_ms=1500)
    with worker_process(env, log) as proc:
        await pipeline.wait_for(lambda: _in_progress(pipeline, slow), within=60, what="the worker to start the job")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, log.read_text()
    assert await pipeline.inbox_status(slow) == "applied"
    assert await total_spend(pipeline, t.client_id) == 5
    events = [e["event"] for e in json_logs(log)]
    assert events.index("event_applied") < events.index("worker_stopped")
    stopped = next(e for e in json_logs(log) if e["event"] == "worker_stopped")
    assert stopped["jobs_complete"] >= 1
    assert "Traceback" not in log.read_text(), json.dumps(events)
