"""Claiming queued jobs in one Redis call, and finishing concurrent jobs in one transaction.

arq starts each job with four round trips in sequence, on the poller (WATCH the job's in-progress key,
EXISTS it, ZSCORE the job, MULTI/PSETEX/EXEC): a worker with 50 free slots spends 200 round trips
before the 50th job starts, and the no-op ceiling is mostly that. The same check-and-set, for every
job of a poll at once, is one Lua script here: atomic in Redis, as the WATCH/MULTI is (optimistically)
in arq, with arq's exact conditions: a job is claimed when no worker holds its in-progress key and it
is still in the queue, due now; claiming sets that key for `in_progress_timeout` ms. The same script
then does what arq's `run_job` opens with, a transaction of its own per job: it reads the job's payload
and counts the try (`workers.jobrun` runs the job from there).

Each finished job is one more MULTI/EXEC round trip in arq. `Finisher` puts the finishing commands of
the jobs that end while one such transaction is in flight into the next one (natural batching, as
`store.coalesce` does for the database: the first goes at once): one round trip for many jobs, each
job's commands unchanged, all of them atomic together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.utils import to_ms

from core.batching import NaturalBatcher
from workers.jobrun import RETRY_KEY_TTL_S, Claimed

MAX_FINISHES = 100  # jobs per transaction

# KEYS: the queue, then per job its in-progress, job and retry keys; ARGV: now (ms), the in-progress
# expiry (ms), the retry key's expiry (s), then the job ids. Per claimed job: id, score, payload ('' when
# the job key has expired) and the incremented try count: arq's `run_job` opening transaction, done here.
CLAIM_LUA = """
local now = tonumber(ARGV[1])
local claimed = {}
for i = 1, (#KEYS - 1) / 3 do
  local id = ARGV[i + 3]
  local in_progress, job_key, retry_key = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if redis.call('EXISTS', in_progress) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) > 0 and tonumber(score) <= now then
      redis.call('PSETEX', in_progress, ARGV[2], '1')
      local payload = redis.call('GET', job_key)
      local try = redis.call('INCR', retry_key)
      redis.call('EXPIRE', retry_key, ARGV[3])
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = score
      claimed[#claimed + 1] = payload or ''
      claimed[#claimed + 1] = try
    end
  end
end
return claimed
"""


class Claimer:
    """One worker's claim script (EVALSHA, re-loaded by redis-py after a Redis restart emptied its cache)."""

    def __init__(self, pool: Any, queue_name: str, in_progress_ms: int) -> None:
        self._script = pool.register_script(CLAIM_LUA)
        self._queue_name, self._in_progress_ms = queue_name, in_progress_ms

    async def claim(self, job_ids: list[str], now_ms: int) -> list[Claimed]:
        """The jobs of `job_ids` this worker now holds, started (try counted), in the order given."""
        keys = [self._queue_name]
        for job_id in job_ids:
            keys += [in_progress_key_prefix + job_id, job_key_prefix + job_id, retry_key_prefix + job_id]
        flat = await self._script(keys=keys, args=[now_ms, self._in_progress_ms, RETRY_KEY_TTL_S, *job_ids])
        return [Claimed(_text(flat[i]), int(float(_text(flat[i + 1]))), _bytes(flat[i + 2]), int(flat[i + 3]))
                for i in range(0, len(flat), 4)]


def finish_commands(tr: Any, *, queue_name: str, job_id: str, finish: bool, result_data: bytes | None,
                    result_px: int | None, incr_score: int | None, keep_in_progress: float | None) -> None:
    """arq 0.28's `Worker.finish_job` commands for one job (pinned in uv.lock), added to `tr`."""
    in_progress_key = in_progress_key_prefix + job_id
    delete_keys = []
    if keep_in_progress is None:
        delete_keys.append(in_progress_key)
    else:
        tr.pexpire(in_progress_key, to_ms(keep_in_progress))
    if finish:
        if result_data:
            tr.set(result_key_prefix + job_id, result_data, px=result_px)
        delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
        tr.zrem(abort_jobs_ss, job_id)
        tr.zrem(queue_name, job_id)
    elif incr_score:
        tr.zincrby(queue_name, incr_score, job_id)
    if delete_keys:
        tr.delete(*delete_keys)


class Finisher:
    """Concurrent jobs' finishing commands in one MULTI/EXEC (`core.batching`); each caller gets that
    transaction's outcome (a Redis failure is every caller's, as it would have been for each alone)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._transactions: NaturalBatcher[Callable[[Any], None], None] = NaturalBatcher(
            self._transaction, max_items=MAX_FINISHES)

    async def run(self, add: Callable[[Any], None]) -> None:
        """Queue `add` (which adds one job's commands to a transaction) and wait for its transaction."""
        await self._transactions.submit(add)

    async def _transaction(self, adds: list[Callable[[Any], None]]) -> list[Exception | None]:
        async with self._pool.pipeline(transaction=True) as tr:
            for add in adds:
                add(tr)
            await tr.execute()
        return [None] * len(adds)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
