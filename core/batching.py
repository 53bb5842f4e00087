"""Natural batching: concurrent callers of one kind of call share it, with no timer.

The first caller goes at once (an idle process waits for nothing); callers that arrive while a call is
in flight queue, and go together in the next one as soon as it returns, so a group is as large as the
load makes it. Each caller gets exactly its own result or its own exception. A caller cancelled while
it queues is dropped before its group is sent; one cancelled while its group is in flight is cancelled
as a lone call would be, and the others are not disturbed. Used by the worker's and the ingress's
`store.coalesce.CoalescingDatabase`, the ingress's `jobqueue.grouped.GroupedQueue` and the worker's
`workers.claim.Finisher`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
_Waiter = tuple[Any, "asyncio.Future[Any]"]


def _same(exc: Exception) -> Exception:
    return exc


class NaturalBatcher(Generic[Item, Result]):
    """Groups concurrent `submit`s into calls of `run`, which takes a group's items and answers one result
    or exception per item, in order; an exception it raises is every item's (each gets `share(exc)`, so
    a group of callers need not share one exception object and its traceback).

    A group holds at most `max_items` items and, by `weigh(item) -> (count, size)`, at most `max_count`
    and `max_size` in total (one item alone may exceed them). `in_flight` calls may run at once.
    """

    def __init__(self, run: Callable[[list[Item]], Awaitable[list[Result | Exception]]], *,
                 max_items: int, weigh: Callable[[Item], tuple[int, int]] = lambda _: (1, 0),
                 max_count: int = 2**31, max_size: int = 2**62, in_flight: int = 1,
                 share: Callable[[Exception], Exception] = _same) -> None:
        self._run, self._weigh, self._share = run, weigh, share
        self._max_items, self._max_count, self._max_size, self._in_flight = max_items, max_count, max_size, in_flight
        self._queue: deque[_Waiter] = deque()
        self._drainers: set[asyncio.Task[None]] = set()
        self.calls = 0  # calls of `run` made (tests and benchmarks read it)

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._drainers = {d for d in self._drainers if not d.done()}  # a done one may not have said so yet
        if len(self._drainers) < self._in_flight:
            # Its own context: the group's call belongs to no one caller's log or trace context.
            self._drainers.add(asyncio.get_running_loop().create_task(self._drain(), context=contextvars.Context()))
        return await future  # cancelling the caller cancels the future: a queued item is then skipped

    def _take(self) -> list[_Waiter]:
        group: list[_Waiter] = []
        count = size = 0
        while self._queue and len(group) < self._max_items:
            item, future = self._queue[0]
            if future.done():  # its caller was cancelled while it queued
                self._queue.popleft()
                continue
            n, nbytes = self._weigh(item)
            if group and (count + n > self._max_count or size + nbytes > self._max_size):
                break
            group.append(self._queue.popleft())
            count, size = count + n, size + nbytes
        return group

    async def _drain(self) -> None:
        while group := self._take():
            self.calls += 1
            try:
                results = await self._run([item for item, _ in group])
            except asyncio.CancelledError:  # closing: nobody gets an answer, nobody is left waiting
                for _, future in [*group, *self._queue]:
                    future.cancel()
                self._queue.clear()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the group
                results = [exc if len(group) == 1 else self._share(exc) for _ in group]
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
