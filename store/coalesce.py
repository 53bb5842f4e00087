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

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from core.batching import NaturalBatcher
from store.errors import DatabaseError, TransientError
from store.port import Database, Row, SqlValue, Statement

# The bridge refuses more statements than this in one request (`d1-bridge/src/index.js`).
MAX_GROUP_STATEMENTS = 1000
# Far under a Worker's request-size limit, and a bound on what one failed request re-sends.
MAX_GROUP_BYTES = 1_000_000
MAX_GROUP_CALLS = 64

Result = TypeVar("Result")


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


class CoalescingDatabase:
    """A `Database` whose concurrent callers share engine calls (see the module); other attributes of the
    database it wraps pass through (`path`, `requests`)."""

    def __init__(self, inner: Database, max_calls: int = MAX_GROUP_CALLS, in_flight: int = 1) -> None:
        self.inner = inner
        limits: dict[str, Any] = {"max_items": max_calls, "weigh": lambda s: (len(s), _size(s)), "in_flight": in_flight,
                                  "max_count": MAX_GROUP_STATEMENTS, "max_size": MAX_GROUP_BYTES, "share": _own}
        self._reads: NaturalBatcher[Sequence[Statement], list[list[Row]]] = NaturalBatcher(self._read_group, **limits)
        self._writes: NaturalBatcher[Sequence[Statement], list[int]] = NaturalBatcher(self._write_group, **limits)

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
