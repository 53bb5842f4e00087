"""Concurrent requests share database calls: one write transaction for every inbox insert that arrives
while the previous one commits, one read call for every lookup that arrives while the previous one runs;
and their enqueues share one Redis round trip (`GroupedQueue`).

Why: SQLite has one writer. Each webhook paid its own `BEGIN IMMEDIATE … COMMIT` and two thread hops
to aiosqlite, so at 500/s requests queued behind one another on the write lock, and a commit that ran a
WAL checkpoint (~10 ms) held up every request behind it (README, Performance). D1 pays a round trip per
call. Grouping is natural batching: the first call goes at once; the calls that arrive while it is in
flight go together in the next one, so a group is as large as the load makes it and no call waits for
a timer.

Each caller keeps its own outcome. A group's batch is one transaction, so it commits all or nothing:
- it commits: each caller gets the changed-row counts of its own statements (inserted or duplicate);
- a transient failure (locked, unreachable: `TransientError`): nothing was written, and every caller
  gets that error (the ingress answers 503; the sender retries);
- any other failure (one caller's constraint violation, a version check): nothing was written, and each
  caller's statements run again alone, so the failure reaches the caller it belongs to only.
A caller is answered only once its own statements are committed. A caller that gives up (its request's
deadline) does not stop the group: its row may still commit, as it could before, and a redelivery of it
is a duplicate that re-queues it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from jobqueue import BatchQueue, Job
from store import Database, SqlValue, Statement, TransientError
from store.port import Row

R = TypeVar("R")
# Statements per shared call: a D1 bridge batch allows 1,000; a group this size commits in ~1 ms on SQLite.
MAX_GROUP_STATEMENTS = 200
MAX_GROUP_JOBS = 200


class _Group(Generic[R]):
    """Callers' statement lists, run through `run` (a batch or a read call) together, one call at a time."""

    def __init__(self, run: Callable[[Sequence[Statement]], Awaitable[list[R]]], max_statements: int) -> None:
        self._run = run
        self._max = max_statements
        self._waiting: list[tuple[Sequence[Statement], asyncio.Future[list[R]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, statements: Sequence[Statement]) -> list[R]:
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._waiting.append((statements, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        group: list[tuple[Sequence[Statement], asyncio.Future[list[R]]]] = []
        try:
            while self._waiting:
                group = self._take()
                await self._run_group(group)
        except BaseException:  # cancelled at shutdown: nobody may be left waiting
            for _, future in [*group, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._drainer = None

    def _take(self) -> list[tuple[Sequence[Statement], asyncio.Future[list[R]]]]:
        """The oldest callers, up to the statement limit (at least one, however large)."""
        count = size = 0
        for statements, _ in self._waiting:
            if count and size + len(statements) > self._max:
                break
            count, size = count + 1, size + len(statements)
        group, self._waiting = self._waiting[:count], self._waiting[count:]
        return group

    async def _run_group(self, group: list[tuple[Sequence[Statement], asyncio.Future[list[R]]]]) -> None:
        try:
            results = await self._run([s for statements, _ in group for s in statements])
        except TransientError as exc:  # nothing was written, and running them alone would fail alike
            for _, future in group:
                _fail(future, exc)
            return
        except Exception as exc:  # noqa: BLE001 - whose failure it is, running each alone tells
            if len(group) == 1:
                _fail(group[0][1], exc)
                return
            for statements, future in group:
                await self._run_alone(statements, future)
            return
        start = 0
        for statements, future in group:
            if not future.done():  # a caller that gave up
                future.set_result(results[start:start + len(statements)])
            start += len(statements)

    async def _run_alone(self, statements: Sequence[Statement], future: asyncio.Future[list[R]]) -> None:
        try:
            result = await self._run(statements)
        except Exception as exc:  # noqa: BLE001 - handed to its caller
            _fail(future, exc)
        else:
            if not future.done():
                future.set_result(result)


def _fail(future: asyncio.Future[R], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class GroupedDatabase:
    """`Database` whose concurrent `batch` calls share one transaction and concurrent reads one call."""

    def __init__(self, inner: Database, max_statements: int = MAX_GROUP_STATEMENTS) -> None:
        self.inner = inner
        self._writes: _Group[int] = _Group(inner.batch, max_statements)
        self._reads: _Group[list[Row]] = _Group(inner.query_many, max_statements)

    async def query(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        return (await self._reads.submit([Statement(sql, tuple(params))]))[0]

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        if not statements:
            return []
        return await self._reads.submit(statements)

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        if not statements:
            return []
        return await self._writes.submit(statements)

    async def close(self) -> None:
        """The inner database is closed by whoever opened it (the composition root)."""


class GroupedQueue:
    """`Queue` whose concurrent enqueues go in one round trip (`enqueue_many`): arq's own enqueue is three
    (WATCH, EXISTS, MULTI/EXEC), and the Redis client's I/O was the ingress's next largest cost. Each
    caller learns its own answer (enqueued, or already held); a failure of the call reaches every caller
    in it, whose row is already durable (the publisher leaves it to the re-drive, as before)."""

    def __init__(self, inner: BatchQueue, max_jobs: int = MAX_GROUP_JOBS) -> None:
        self.inner = inner
        self._max = max_jobs
        self._waiting: list[tuple[Job, asyncio.Future[bool]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(((envelope_json, event_id, defer_until), future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        group: list[tuple[Job, asyncio.Future[bool]]] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
                try:
                    answers = await self.inner.enqueue_many([job for job, _ in group])
                except Exception as exc:  # noqa: BLE001 - handed to every caller of the call
                    for _, future in group:
                        _fail(future, exc)
                    continue
                for (_, future), answer in zip(group, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        except BaseException:  # cancelled at shutdown: nobody may be left waiting
            for _, future in [*group, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._drainer = None

    async def depth(self) -> int:
        return await self.inner.depth()
