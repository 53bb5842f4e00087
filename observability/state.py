"""The pipeline-state gauges, computed once for everyone: inbox pending and dead, the oldest due
pending event's age, the queue depth.

Every process (the ingress, each worker with metrics on) runs a `StateRefresher`. Every interval
(15 s) each one tries to take a short lock in Redis (`SET key NX PX interval`); the one that gets it
runs the bounded queries (`readmodels.inbox.alert_state`: index-only, counts capped at
`COUNT_CAP`) and stores the snapshot in Redis; all of them then read the snapshot and serve it.
So N processes cost one query round trip per interval, not N, and every process reports the same
numbers (alert rules aggregate them with `max()`). The snapshot carries the time it was computed
(`studiovault_pipeline_state_timestamp_seconds`): if no process can refresh it, its age shows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol, TypeVar

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.clock import utc_now
from jobqueue import Queue
from observability.instruments import redis_error_kind
from observability.metrics import ErrorSink
from readmodels.inbox import COUNT_CAP, alert_state
from store import Database

log = structlog.get_logger("studiovault.metrics")
T = TypeVar("T")


class SharedStore(Protocol):
    """The few Redis operations the snapshot needs (the adapter is wired by `bootstrap`)."""

    async def claim(self, key: str, ttl_ms: int) -> bool:
        """SET key NX PX ttl_ms: True when this caller took it."""
        ...

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None: ...

    async def get(self, key: str) -> bytes | None: ...


@dataclass(frozen=True)
class Snapshot:
    pending: int  # capped at COUNT_CAP
    dead: int  # capped at COUNT_CAP
    oldest_pending_age_s: float  # the most overdue pending event: now - its available_at; 0 if none is due
    queue_depth: int
    computed_at: float  # unix seconds

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Snapshot | None:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None


async def compute(db: Database, queue: Queue, now: datetime) -> Snapshot:
    """One database round trip (three index-only reads) and one ZCARD."""
    state = await alert_state(db, now, COUNT_CAP)
    depth = await queue.depth()
    return Snapshot(state.pending, state.dead, state.oldest_due_age_s, depth, now.timestamp())


class PipelineState:
    """A prometheus_client collector serving the latest snapshot this process has read."""

    def __init__(self) -> None:
        self.latest: Snapshot | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self._families(None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.latest
        return self._families(snap) if snap is not None else iter(())

    @staticmethod
    def _families(snap: Snapshot | None) -> Iterator[GaugeMetricFamily]:
        inbox = GaugeMetricFamily("studiovault_inbox_events", f"Inbox rows by status (counted up to {COUNT_CAP}).",
                                  labels=["status"])
        oldest = GaugeMetricFamily("studiovault_inbox_oldest_pending_age_seconds",
                                   "How long the most overdue pending event has been due (0: none is due).")
        depth = GaugeMetricFamily("studiovault_queue_depth", "Jobs in the arq queue (waiting or scheduled).")
        stamp = GaugeMetricFamily("studiovault_pipeline_state_timestamp_seconds",
                                  "Unix time the pipeline-state snapshot was computed.")
        if snap is not None:
            inbox.add_metric(["pending"], snap.pending)
            inbox.add_metric(["dead"], snap.dead)
            oldest.add_metric([], snap.oldest_pending_age_s)
            depth.add_metric([], snap.queue_depth)
            stamp.add_metric([], snap.computed_at)
        yield from (inbox, oldest, depth, stamp)


_: type[Collector] = PipelineState  # it is a prometheus_client Collector


class StateRefresher:
    """Refresh (when this process holds the lock) and read the shared snapshot, every `interval_s`."""

    def __init__(self, *, db: Database, queue: Queue, store: SharedStore, state: PipelineState, errors: ErrorSink,
                 key: str, interval_s: float) -> None:
        self.db, self.queue, self.store, self.state, self.errors = db, queue, store, state, errors
        self.key, self.lock_key = key, f"{key}:lock"
        self.interval_s = interval_s
        self.refreshed = 0  # snapshots this process computed

    async def tick(self) -> Snapshot | None:
        """One round: maybe compute and store, then read what is stored."""
        ttl_ms = max(int(self.interval_s * 1000) - 200, 100)  # free again just before the next round
        if await self._redis(self.store.claim(self.lock_key, ttl_ms)):
            fresh = await compute(self.db, self.queue, utc_now())
            await self._redis(self.store.put(self.key, fresh.to_json(), ttl_ms=int(self.interval_s * 1000) * 20))
            self.refreshed += 1
        raw = await self._redis(self.store.get(self.key))
        stored = Snapshot.from_json(raw) if raw is not None else None
        if stored is not None:
            self.state.latest = stored
        return self.state.latest

    async def _redis(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            self.errors.redis_error(redis_error_kind(exc))
            raise

    async def run(self) -> None:
        """Until cancelled; a failed round is logged and the next one tries again."""
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the gauges go stale (their timestamp shows it), no crash
                log.warning("pipeline_state_refresh_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.interval_s)
