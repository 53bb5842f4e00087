"""The typed arq job context: one frozen `Deps` built at worker start-up (by `bootstrap`), instead of
loose ctx keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

import structlog
from arq.connections import ArqRedis

from config import Settings
from events.publish import Publisher
from gateways.accounts import AccountStore
from gateways.port import GatewayApi
from handlers.base import Router, Services
from jobqueue import FeedCursor, Queue
from observability.metrics import WorkerMetrics
from store import Database
from workers.failpoints import Failpoints
from workers.policy import Backoff

log = structlog.get_logger("studiovault.worker")


class KeyedLocks:
    """One asyncio.Lock per key, alive only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: str) -> _Hold:
        """`async with locks.hold(key):` — the key's lock, held for the block."""
        return _Hold(self, key)

    def _join(self, key: str) -> asyncio.Lock:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        return lock

    def _leave(self, key: str) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class _Hold:
    """`KeyedLocks.hold`'s context manager (a class: one per job, cheaper than a generator's)."""

    __slots__ = ("_key", "_lock", "_locks")

    def __init__(self, locks: KeyedLocks, key: str) -> None:
        self._locks, self._key = locks, key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        lock = self._locks._join(self._key)
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user of the key
            self._locks._leave(self._key)
            raise
        self._lock = lock

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:  # always, after __aenter__
            self._lock.release()
        self._locks._leave(self._key)


_EVENTS = {"database": ("database_unavailable", "database_recovered")}


class Outages:
    """Logs an outage of a dependency once when it starts and once when it ends, not once per event."""

    def __init__(self) -> None:
        self._down: dict[str, float] = {}

    def failed(self, what: str, exc: BaseException) -> None:
        if what not in self._down:
            self._down[what] = time.monotonic()
            log.error(_EVENTS[what][0], error=f"{type(exc).__name__}: {exc}"[:300])

    def ok(self, what: str) -> None:
        if self._down and what in self._down:
            log.info(_EVENTS[what][1], outage_s=round(time.monotonic() - self._down.pop(what), 1))


@dataclass(frozen=True)
class Deps:
    settings: Settings
    db: Database
    queue: Queue
    publisher: Publisher
    router: Router
    clock: Callable[[], datetime]
    backoff: Backoff
    services: Services = field(default_factory=Services)
    failpoints: Failpoints = field(default_factory=Failpoints)
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    outages: Outages = field(default_factory=Outages)
    # The inbox feed poller's shared cursor (None: this worker runs no feed poller).
    feed: FeedCursor | None = None
    # Gateway accounts and their list APIs, for the reconciliation cron (None: not reconciling).
    accounts: AccountStore | None = None
    gateway_api: GatewayApi | None = None
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    # What was opened for these deps (database, HTTP client), closed by `close()` at shutdown.
    resources: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def close(self) -> None:
        await self.resources.aclose()


class JobContext(TypedDict):
    """arq's ctx as our jobs see it (arq adds the job keys; `deps` is ours)."""

    deps: Deps
    redis: ArqRedis
    job_id: str
    job_try: int
