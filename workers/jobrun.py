"""Running a job the claim script already started: arq 0.28's `Worker.run_job` without its first round trip.

arq begins every job with a transaction of its own (GET the job, INCR and EXPIRE its try count) before
running it: one more Redis round trip per job, on the event loop's thread. `workers.claim` does those
three commands inside the claim script, for every job of a poll at once, and hands each job here with
its payload and its try number. From there this is arq's `run_job` (pinned in uv.lock), branch for
branch, for what this worker uses: the same checks (expired job, undecodable job, unknown function, too
many tries), the same outcomes (`Retry` and cancellation re-queue the job, another exception finishes
it as failed, a timeout is such an exception), the same counters and the same finishing commands. Not
supported, and refused when the worker is built: aborting jobs and the per-job hooks.

One difference, on purpose: the job's coroutine runs in the job's own task under `asyncio.timeout`
instead of in a second task under `wait_for`; the outcome is the same, with one task and one timer
handle fewer per job.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from arq.constants import keep_cronjob_progress, retry_key_prefix
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import args_to_string, ms_to_datetime, timestamp_ms, truncate
from arq.worker import JobExecutionFailed, Retry, RetryJob, Worker, no_result

logger = logging.getLogger("arq.worker")  # arq's own logger: its lines read as they always did
RETRY_KEY_TTL_S = 88_400  # arq's


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job the claim script started: its queue score, its stored payload (b"" once expired) and its
    try number (the retry key, already incremented)."""

    job_id: str
    score: int
    payload: bytes
    job_try: int


def check_supported(worker: Worker) -> None:
    """Refuse a worker configured with what `run_claimed` does not do."""
    unsupported = [name for name in ("allow_abort_jobs", "on_job_start", "on_job_end", "after_job_end")
                   if getattr(worker, name)]
    if unsupported:
        raise ValueError(f"PipelineWorker does not support {', '.join(unsupported)}")


async def run_claimed(worker: Worker, job: Claimed) -> None:  # noqa: C901, PLR0912, PLR0915 - arq's, branch for branch
    job_id, score, job_try = job.job_id, job.score, job.job_try
    start_ms = timestamp_ms()
    function_name, enqueue_time_ms = "<unknown>", 0
    args: tuple[Any, ...] = ()
    kwargs: dict[Any, Any] = {}

    async def job_failed(exc: BaseException) -> None:
        worker.jobs_failed += 1
        result_data_ = serialize_result(
            function=function_name, args=args, kwargs=kwargs, job_try=job_try, enqueue_time_ms=enqueue_time_ms,
            success=False, result=exc, start_ms=start_ms, finished_ms=timestamp_ms(), ref=f"{job_id}:{function_name}",
            serializer=worker.job_serializer, queue_name=worker.queue_name, job_id=job_id)
        await asyncio.shield(worker.finish_failed_job(job_id, result_data_))

    if not job.payload:
        logger.warning("job %s expired", job_id)
        return await job_failed(JobExecutionFailed("job expired"))
    try:
        function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
            job.payload, deserializer=worker.job_deserializer)
    except SerializationError as e:
        logger.exception("deserializing job %s failed", job_id)
        return await job_failed(e)
    try:
        function = worker.functions[function_name]
    except KeyError:
        logger.warning("job %s, function %r not found", job_id, function_name)
        return await job_failed(JobExecutionFailed(f"function {function_name!r} not found"))

    if hasattr(function, "next_run"):  # a cron job
        ref, keep_in_progress = function_name, keep_cronjob_progress
    else:
        ref, keep_in_progress = f"{job_id}:{function_name}", None

    if enqueue_job_try and enqueue_job_try > job_try:
        job_try = enqueue_job_try
        await worker.pool.setex(retry_key_prefix + job_id, RETRY_KEY_TTL_S, str(job_try))

    max_tries = worker.max_tries if function.max_tries is None else function.max_tries
    if job_try > max_tries:
        logger.warning("%6.2fs ! %s max retries %d exceeded", (timestamp_ms() - enqueue_time_ms) / 1000, ref,
                       max_tries)
        return await job_failed(JobExecutionFailed(f"max {max_tries} retries exceeded"))

    result: Any = no_result
    finish = success = False
    timeout_s = worker.job_timeout_s if function.timeout_s is None else function.timeout_s
    incr_score: int | None = None
    ctx = {**worker.ctx, "job_id": job_id, "job_try": job_try, "enqueue_time": ms_to_datetime(enqueue_time_ms),
           "score": score}
    start_ms = timestamp_ms()
    try:
        if logger.isEnabledFor(logging.INFO):
            extra = f" try={job_try}" if job_try > 1 else ""
            if (start_ms - score) > 1200:
                extra += f" delayed={(start_ms - score) / 1000:0.2f}s"
            logger.info("%6.2fs → %s(%s)%s", (start_ms - enqueue_time_ms) / 1000, ref, args_to_string(args, kwargs),
                        extra)
        async with asyncio.timeout(timeout_s):
            result = await function.coroutine(ctx, *args, **kwargs)
    except (Exception, asyncio.CancelledError) as e:
        finished_ms = timestamp_ms()
        t = (finished_ms - start_ms) / 1000
        if worker.retry_jobs and isinstance(e, Retry):
            incr_score = e.defer_score
            logger.info("%6.2fs ↻ %s retrying job in %0.2fs", t, ref, (e.defer_score or 0) / 1000)
            if e.defer_score:
                incr_score = e.defer_score + (timestamp_ms() - score)
            worker.jobs_retried += 1
        elif worker.retry_jobs and isinstance(e, asyncio.CancelledError | RetryJob):
            logger.info("%6.2fs ↻ %s cancelled, will be run again", t, ref)
            worker.jobs_retried += 1
        else:
            logger.exception("%6.2fs ! %s failed, %s: %s", t, ref, e.__class__.__name__, e)  # noqa: TRY401 - arq's
            result, finish = e, True
            worker.jobs_failed += 1
    else:
        success = finish = True
        finished_ms = timestamp_ms()
        if logger.isEnabledFor(logging.INFO):
            result_str = "" if result is None or not worker.log_results else truncate(repr(result))
            logger.info("%6.2fs ← %s ● %s", (finished_ms - start_ms) / 1000, ref, result_str)
        worker.jobs_complete += 1

    keep_forever = worker.keep_result_forever if function.keep_result_forever is None else function.keep_result_forever
    result_timeout_s = worker.keep_result_s if function.keep_result_s is None else function.keep_result_s
    result_data = None
    if result is not no_result and (keep_forever or result_timeout_s > 0):
        result_data = serialize_result(function_name, args, kwargs, job_try, enqueue_time_ms, success, result,
                                       start_ms, finished_ms, ref, worker.queue_name, job_id=job_id,
                                       serializer=worker.job_serializer)
    await asyncio.shield(worker.finish_job(job_id, finish, result_data, result_timeout_s, keep_forever, incr_score,
                                           keep_in_progress))
    return None
