"""The R2 relay Worker (r2-relay/src/index.js) under miniflare, consuming a real local queue and posting
to the real ingress over HTTP: signed messages land in media_objects; refused ones reach REFUSED."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.support.d1bridge import _node_and_npm, ensure_npm_installed
from tests.support.factories import make_tenant
from tests.support.gateway import serve
from tests.support.media import BUCKET, key_for, media_rows, r2_message
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.d1  # needs node and miniflare, like the D1 bridge
HARNESS = Path(__file__).resolve().parents[2] / "r2-relay" / "test" / "harness.mjs"
CURRENT = "whsec_" + base64.b64encode(b"relay-current-secret-0123456789ab").decode()
RETIRING = "whsec_" + base64.b64encode(b"relay-retiring-secret-0123456789").decode()


class Relay:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, within: float = 30) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not raw:
            raise AssertionError("the relay harness exited")
        return dict(json.loads(raw))

    async def send(self, bodies: list[dict[str, Any]]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(bodies) + "\n").encode())
        await self.process.stdin.drain()


@pytest.fixture
async def relay(pipeline: Pipeline) -> AsyncIterator[Relay]:
    node, npm = _node_and_npm()
    await asyncio.to_thread(ensure_npm_installed, npm)
    # The ingress holds only the current secret; the relay, mid-rotation, signs with both.
    app = pipeline.ingress_app(standard_webhook_secrets=[SecretStr(CURRENT)], r2_buckets=[BUCKET])
    async with serve(app) as url:
        process = await asyncio.create_subprocess_exec(
            node, str(HARNESS), f"{url}/webhooks/r2", f"{RETIRING} {CURRENT}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        harness = Relay(process)
        try:
            assert await harness.line(within=60) == {"ready": True}
            yield harness
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_the_relay_forwards_queued_r2_notifications_signed_and_parks_refused_ones(
    pipeline: Pipeline, relay: Relay
) -> None:
    t = await make_tenant(pipeline.db)
    await pipeline.start_worker(router_path="handlers.routes:ROUTER")
    bodies = [r2_message(key_for(t, "delivery", f"IMG_{i}.jpg"), size=1_000 * (i + 1), etag=f"e{i}") for i in range(3)]
    bad = r2_message("uploads/IMG_9.jpg")
    await relay.send([*bodies, bad])
    assert await relay.line() == {"sent": 4}
    refused = await relay.line()
    assert refused["refused"]["status"] == 422
    assert json.loads(refused["refused"]["detail"])["error"] == "bad_key"
    assert refused["refused"]["message"] == bad

    async def three_rows() -> bool:
        return len(await media_rows(pipeline.db, t.project_id)) == 3

    await pipeline.wait_for(three_rows, within=30, what="the relayed uploads to be applied")
    sizes = sorted(r["size_bytes"] for r in await media_rows(pipeline.db, t.project_id))
    assert sizes == [1_000, 2_000, 3_000]
    media_events = await pipeline.db.query("SELECT count(*) AS n FROM event_inbox WHERE type = 'media.uploaded'")
    assert media_events == [{"n": 3}]
