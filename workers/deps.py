"""The typed arq job context: one frozen `Deps` built at worker start-up, instead of loose ctx keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import httpx
from arq.connections import ArqRedis

from events.publish import Publisher
from handlers.base import Router
from store import Database
from workers.policy import Backoff
from workers.queue import ArqQueue
from workers.settings import Settings


class KeyedLocks:
    """One asyncio.Lock per key, alive only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass(frozen=True)
class Deps:
    settings: Settings
    db: Database
    queue: ArqQueue
    publisher: Publisher
    router: Router
    http: httpx.AsyncClient
    clock: Callable[[], datetime]
    backoff: Backoff
    services: Mapping[str, Any] = field(default_factory=dict)
    locks: KeyedLocks = field(default_factory=KeyedLocks)


class JobContext(TypedDict):
    """arq's ctx as our jobs see it (arq adds the job keys; `deps` is ours)."""

    deps: Deps
    redis: ArqRedis
    job_id: str
    job_try: int
