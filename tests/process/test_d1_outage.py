"""The D1 bridge unreachable for 30 s under load (the Worker process stopped, then started again on the same
port and database): nothing dead-lettered, every event applied exactly once, work resumes within seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from store.d1 import D1BridgeDatabase
from store.migrate import migrate
from tests.support.cluster import Cluster
from tests.support.d1bridge import start_bridge
from tests.support.redis_server import RedisProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.d1]
TOKEN = "outage-test-token"  # the application's: data statements only
MIGRATION_TOKEN = "outage-test-migration-token"


class Bridge:
    """The bridge Worker under miniflare on a fixed port, its D1 database kept on disk across restarts."""

    def __init__(self, workdir: Path) -> None:
        self.persist, self.port = workdir / "d1", free_port()
        self._running: AbstractContextManager[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._running = start_bridge(self.persist, TOKEN, migration_token=MIGRATION_TOKEN, port=self.port)
        assert self._running.__enter__() == self.url

    def stop(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    running = Bridge(tmp_path)
    running.start()
    yield running
    running.stop()


async def test_the_d1_bridge_stopped_for_30_s_under_load_loses_nothing_and_work_resumes(
    bridge: Bridge, tmp_path: Path
) -> None:
    migrator = D1BridgeDatabase(bridge.url, MIGRATION_TOKEN)
    await migrate(migrator)
    await migrator.close()
    db = D1BridgeDatabase(bridge.url, TOKEN)
    cluster = Cluster(db, f"d1+{bridge.url}", RedisProcess(tmp_path / "redis"), tmp_path,
                      env_overrides={"SV_D1_BRIDGE_TOKEN": TOKEN, "SV_JOB_TIMEOUT": "30", "SV_REDRIVE_GRACE": "60"})
    await cluster.start(tenants=4)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await asyncio.gather(*(cluster.deliver(http, c) for c in cluster.new_captures(8)))
            # Deliveries flowing when the bridge stops: some are in the inbox and being applied, the rest are
            # answered 503 until it is back (the gateway retries).
            sending = asyncio.gather(*(cluster.deliver(http, c) for c in cluster.new_captures(40)))
            await cluster.until(lambda: cluster.pending_at_least(5), within=30)
            bridge.stop()
            await asyncio.sleep(30)
            bridge.start()
            back = time.monotonic()
            await sending
        waited = await cluster.settled(within=max(1.0, 20 - (time.monotonic() - back)))
        assert time.monotonic() - back <= 20, waited
        await cluster.exactly_once()  # nothing dead: the outage spent no event's failure budget
        outages = [cluster.events(name).count("database_unavailable") for name in ("worker-0", "worker-1")]
        assert max(outages) == 1, outages  # the workers met the outage, and said so once
        for name in ("worker-0", "worker-1"):
            assert "event_dead_lettered" not in cluster.events(name)
        cluster.assert_alive()
    finally:
        cluster.stop()
        await db.close()
