"""Coalesced units of work: concurrent callers in one process share engine calls.

A worker runs up to `SV_MAX_JOBS` units of work at once, and each one makes a read snapshot and a write
batch. Alone, every one of them is an engine call: on SQLite a thread hop and its own `BEGIN IMMEDIATE
... COMMIT` behind one write lock, on D1 an HTTP request. `CoalescingDatabase` merges them:

- the `query_many` snapshots that arrive while one is in flight go together in ONE engine call (one D1
  request), each caller getting its own statements' rows;
- the `batch`es that arrive while one is in flight go together in ONE `batches` call (group commit:
  SQLite one transaction with a savepoint per unit, D1 one bridge request), each still all-or-nothing
  on its own, so one unit's version conflict or constraint violation fails that unit only.

Every caller gets exactly its own result or its own exception, as if it had called alone. Natural
batching, no timers: the first caller goes at once (an idle worker waits for nothing); callers that
arrive while a call is in flight queue, and go together as soon as it returns. A group is bounded by
D1's limits (statements per bridge request, bytes per request). A caller cancelled while queued is
dropped from its group before it is sent; one cancelled while its group is in flight is cancelled as
a lone call would be (its unit may have committed: its guards make a replay harmless) and the others
are not disturbed. Ordering per lock key is the caller's (`workers.locks`): units on one key are never
in flight together, so they never share a group nor run in two groups at once.

`in_flight` engine calls of each kind may run at once (default 1). SQLite has one writer and one reader
thread, so more would only queue there; on D1 a second call in flight shortens the wait of callers who
arrive during a round trip, but measured at 50 ms RTT it did not raise throughput (0.42 vs 0.49 of the
zero-latency rate, in noisy runs) and it raised requests per event (0.25 vs 0.17), so the worker uses 1.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from store.errors import DatabaseError, TransientError
from store.port import Database, Row, SqlValue, Statement

# The bridge refuses more statements than this in one request (`d1-bridge/src/index.js`).
MAX_GROUP_STATEMENTS = 1000
# Far under a Worker's request-size limit, and a bound on what one failed request re-sends.
MAX_GROUP_BYTES = 1_000_000
MAX_GROUP_CALLS = 64

Item = TypeVar("Item")
Result = TypeVar("Result")
_Waiter = tuple[Any, "asyncio.Future[Any]"]


def _size(statements: Sequence[Statement]) -> int:
    return sum(len(sql) + sum(len(p) if isinstance(p, str) else 8 for p in params) for sql, params in statements)


def _own(exc: Exception) -> Exception:
    """A copy of a group's shared failure for one caller (its own traceback), the original as its cause."""
    if not isinstance(exc, DatabaseError):
        return exc
    try:
        copy = type(exc)(*exc.args)
    except TypeError:  # pragma: no cover - every DatabaseError takes its message
        return exc
    copy.__cause__ = exc
    return copy


class _Lane(Generic[Item, Result]):
    """Natural batching of one kind of call: `run` takes the items of a group and answers one result or
    exception per item, in order; an exception it raises is every item's."""

    def __init__(self, run: Callable[[list[Item]], Awaitable[list[Result | Exception]]],
                 weigh: Callable[[Item], tuple[int, int]], max_calls: int, in_flight: int) -> None:
        self._run, self._weigh, self._max_calls, self._in_flight = run, weigh, max_calls, in_flight
        self._queue: deque[_Waiter] = deque()
        self._drainers: set[asyncio.Task[None]] = set()
        self.calls = 0  # engine calls made (tests and benchmarks read it)

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._drainers = {d for d in self._drainers if not d.done()}  # a done one may not have said so yet
        if len(self._drainers) < self._in_flight:
            # Its own context: the group's engine call belongs to no one caller's log or trace context.
            self._drainers.add(asyncio.get_running_loop().create_task(self._drain(), context=contextvars.Context()))
        return await future  # cancelling the caller cancels the future: a queued item is then skipped

    def _take(self) -> list[_Waiter]:
        group: list[_Waiter] = []
        statements = size = 0
        while self._queue and len(group) < self._max_calls:
            item, future = self._queue[0]
            if future.done():  # its caller was cancelled while it queued
                self._queue.popleft()
                continue
            n, nbytes = self._weigh(item)
            if group and (statements + n > MAX_GROUP_STATEMENTS or size + nbytes > MAX_GROUP_BYTES):
                break
            group.append(self._queue.popleft())
            statements, size = statements + n, size + nbytes
        return group

    async def _drain(self) -> None:
        while group := self._take():
            self.calls += 1
            try:
                results = await self._run([item for item, _ in group])
            except asyncio.CancelledError:  # the database is closing: nobody gets an answer
                for _, future in [*group, *self._queue]:
                    future.cancel()
                self._queue.clear()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the group
                results = [exc if len(group) == 1 else _own(exc) for _ in group]
            for (_, future), result in zip(group, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def close(self) -> None:
        drainers = list(self._drainers)
        for drainer in drainers:
            drainer.cancel()
        await asyncio.gather(*drainers, return_exceptions=True)


class CoalescingDatabase:
    """A `Database` whose concurrent callers share engine calls (see the module); other attributes of the
    database it wraps pass through (`path`, `requests`)."""

    def __init__(self, inner: Database, max_calls: int = MAX_GROUP_CALLS, in_flight: int = 1) -> None:
        self.inner = inner
        self._reads: _Lane[Sequence[Statement], list[list[Row]]] = _Lane(
            self._read_group, lambda s: (len(s), _size(s)), max_calls, in_flight)
        self._writes: _Lane[Sequence[Statement], list[int]] = _Lane(
            self._write_group, lambda s: (len(s), _size(s)), max_calls, in_flight)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def engine_calls(self) -> tuple[int, int]:
        """Read and write engine calls made so far."""
        return self._reads.calls, self._writes.calls

    async def query(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        return (await self.query_many([Statement(sql, tuple(params))]))[0]

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        if not statements:
            return []
        return await self._reads.submit(statements)

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        if not statements:
            return []
        return await self._writes.submit(statements)

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        return await self.inner.batches(units)

    async def close(self) -> None:
        await self._reads.close()
        await self._writes.close()
        await self.inner.close()

    async def _read_group(self, requests: list[Sequence[Statement]]) -> list[list[list[Row]] | Exception]:
        if len(requests) == 1:
            return [await self.inner.query_many(requests[0])]
        try:
            rows = await self.inner.query_many([s for request in requests for s in request])
        except TransientError:
            raise  # the engine could not be reached: each would have failed alone
        except DatabaseError:  # one caller's statement (a limit, its SQL) failed the group: each alone
            return [await _alone(self.inner.query_many, request) for request in requests]
        results: list[list[list[Row]] | Exception] = []
        start = 0
        for request in requests:
            results.append(rows[start:start + len(request)])
            start += len(request)
        return results

    async def _write_group(self, units: list[Sequence[Statement]]) -> list[list[int] | Exception]:
        if len(units) == 1:  # alone: exactly the call it would have made without coalescing
            return [await self.inner.batch(units[0])]
        try:
            return list(await self.inner.batches(units))
        except TransientError:
            raise  # nothing may be assumed committed: each caller retries its unit, whose guards hold
        except DatabaseError:  # the request as a whole was refused (its size, a malformed answer)
            return [await _alone(self.inner.batch, unit) for unit in units]


async def _alone(call: Callable[[Sequence[Statement]], Awaitable[Result]],
                 statements: Sequence[Statement]) -> Result | Exception:
    """One caller's statements on their own; its own failure is its answer (a transient one raises)."""
    try:
        return await call(statements)
    except TransientError:
        raise
    except DatabaseError as exc:
        return exc
