"""End to end: signed R2 notifications over real HTTP (uvicorn), the inbox, Redis and a real arq worker."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from events.ids import new_id
from events.media_keys import build_key
from readmodels import storage
from tests.support.factories import make_tenant
from tests.support.gateway import serve
from tests.support.media import BUCKET, dumps, key_for, media_rows, r2_message
from tests.support.pipeline import Pipeline

SECRET = "whsec_" + base64.b64encode(b"r2-relay-test-secret-0123456789ab").decode()
ROTATED_OUT = "whsec_" + base64.b64encode(b"r2-relay-old-secret-0123456789ab").decode()


def signed(body: bytes, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    msg_id = f"msg_{new_id('evt')[-12:]}"
    when = at or datetime.now(UTC)
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode())}


@pytest.fixture
async def client(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    app = pipeline.ingress_app(standard_webhook_secrets=[SecretStr(SECRET)], r2_buckets=[BUCKET])
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        yield http


async def post(client: httpx.AsyncClient, message: dict[str, Any]) -> httpx.Response:
    body = dumps(message)
    return await client.post("/webhooks/r2", content=body, headers=signed(body))


async def media_settled(pipeline: Pipeline) -> None:
    """Every media event has left 'pending' (a notification the media flow asked for may still be in flight)."""

    async def done() -> bool:
        rows = await pipeline.db.query(
            "SELECT count(*) AS n FROM event_inbox WHERE status = 'pending' AND type LIKE 'media.%'")
        return int(rows[0]["n"]) == 0

    await pipeline.wait_for(done, within=60, what="media events to be applied")


async def test_a_signed_delivery_upload_creates_its_row_moves_storage_and_a_burst_yields_one_photos_ready(
    pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    t = await make_tenant(pipeline.db)
    await pipeline.start_worker(router_path="handlers.routes:ROUTER")
    assert await storage.org_usage(pipeline.db, t.org_id) == storage.Usage(0, 0)

    first = await post(client, r2_message(key_for(t, "delivery", "IMG_0001.jpg"), size=5_242_880, etag="e0"))
    assert first.status_code == 202, first.text
    await media_settled(pipeline)
    (row,) = await media_rows(pipeline.db, t.project_id)
    assert (row["path"], row["size_bytes"], row["watermark_state"]) == (key_for(t), 5_242_880, "clean")
    assert await storage.project_usage(pipeline.db, t.project_id) == storage.Usage(5_242_880, 1)
    assert await storage.org_usage(pipeline.db, t.org_id) == storage.Usage(5_242_880, 1)

    semaphore = asyncio.Semaphore(50)

    async def upload(i: int) -> int:
        async with semaphore:
            message = r2_message(key_for(t, "delivery", f"burst/IMG_{i:04}.jpg"), size=1_000, etag=f"b{i}")
            return (await post(client, message)).status_code

    statuses = await asyncio.gather(*(upload(i) for i in range(500)))
    assert set(statuses) == {202}
    await media_settled(pipeline)
    assert await storage.branch_usage(pipeline.db, t.branch_id) == storage.Usage(5_742_880, 501)
    notices = await pipeline.db.query("SELECT dedupe_key FROM event_inbox WHERE type = 'notification.due'")
    assert notices == [{"dedupe_key": f"notify:photos_ready:{t.project_id}"}]


async def test_duplicate_and_reordered_creates_and_deletes_over_http_converge(
    pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    t = await make_tenant(pipeline.db)
    key = key_for(t, "proxy", "IMG_7.jpg")
    create = r2_message(key, size=1_000, etag="aa", when="2026-09-21T10:00:00.000Z")
    delete = r2_message(key, action="DeleteObject", size=None, etag=None, when="2026-09-21T10:00:10.000Z")
    recreate = r2_message(key, action="CompleteMultipartUpload", size=7_340_032, etag="bb-3",
                          when="2026-09-21T10:00:20.000Z")
    responses = [await post(client, m) for m in (recreate, delete, create, create, delete, recreate)]
    assert [r.status_code for r in responses] == [202] * 6
    assert [r.json()["duplicate"] for r in responses] == [False, False, False, True, True, True]
    await pipeline.start_worker(router_path="handlers.routes:ROUTER")
    await media_settled(pipeline)
    (row,) = await media_rows(pipeline.db, t.project_id)
    assert (row["size_bytes"], row["watermark_state"], row["version"]) == (7_340_032, "proof", 1)
    assert await storage.project_usage(pipeline.db, t.project_id) == storage.Usage(7_340_032, 1)


async def _inbox_count(pipeline: Pipeline) -> int:
    return int((await pipeline.db.query("SELECT count(*) AS n FROM event_inbox"))[0]["n"])


async def test_bad_signatures_and_keys_outside_the_layout_are_refused_and_nothing_is_written(
    pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    t = await make_tenant(pipeline.db)
    good = dumps(r2_message(key_for(t)))
    stale = datetime.fromtimestamp(datetime.now(UTC).timestamp() - 600, tz=UTC)
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (good, signed(good, ROTATED_OUT), 401, "bad_signature"),
        (good, signed(good, at=stale), 401, "bad_signature"),
        (good, {**signed(good), "webhook-signature": "v1,AAAA"}, 401, "bad_signature"),
        (good, {"content-type": "application/json"}, 401, "bad_signature"),
        (good + b" ", signed(good), 401, "bad_signature"),  # body altered after signing
        (b"not json", signed(b"not json"), 400, "bad_message"),
        (dumps({"account": "a", "action": "PutObject"}), signed(dumps({"account": "a", "action": "PutObject"})),
         400, "bad_message"),
    ]
    for message, error in [
        (r2_message("studios/st_01/shoots/sh_9/raw/IMG_0001.CR3"), "bad_key"),
        (r2_message(key_for(t, "delivery", "")), "bad_key"),
        (r2_message(build_key(t.org_id, t.branch_id, t.project_id, "thumbs", "x.jpg")), "bad_key"),
        (r2_message(key_for(t)) | {"bucket": "someone-elses-bucket"}, "unknown_bucket"),
        (r2_message(key_for(t), size=None), "incomplete_object"),
        (r2_message(key_for(t), action="RestoreObject"), "unknown_action"),
    ]:
        body = dumps(message)
        cases.append((body, signed(body), 422, error))
    for body, headers, status, error in cases:
        response = await client.post("/webhooks/r2", content=body, headers=headers)
        assert (response.status_code, response.json()["error"]) == (status, error), response.text
        assert response.json()["detail"]
    assert await _inbox_count(pipeline) == 0
    assert await pipeline.redis.zcard(pipeline.settings.queue.queue_name) == 0


async def test_unknown_projects_and_cross_tenant_keys_are_dead_lettered_with_the_reason(
    pipeline: Pipeline, client: httpx.AsyncClient
) -> None:
    mine, theirs = await make_tenant(pipeline.db), await make_tenant(pipeline.db)
    keys = {
        "unknown_project": build_key(mine.org_id, mine.branch_id, new_id("prj"), "delivery", "a.jpg"),
        "their project under my branch": build_key(mine.org_id, mine.branch_id, theirs.project_id, "delivery", "a.jpg"),
        "their branch under my org": build_key(mine.org_id, theirs.branch_id, theirs.project_id, "delivery", "a.jpg"),
    }
    event_ids = {}
    for label, key in keys.items():
        response = await post(client, r2_message(key))
        assert response.status_code == 202
        event_ids[label] = response.json()["event_id"]
    await pipeline.start_worker(router_path="handlers.routes:ROUTER")
    await media_settled(pipeline)
    reasons = {}
    for label, event_id in event_ids.items():
        row = (await pipeline.db.query("SELECT status, last_error FROM event_inbox WHERE id = ?", (event_id,)))[0]
        assert row["status"] == "dead"
        reasons[label] = row["last_error"].split(":")[0]
    assert reasons == {"unknown_project": "unknown_project", "their project under my branch": "wrong_tenant",
                       "their branch under my org": "wrong_tenant"}
    for tenant in (mine, theirs):
        assert await media_rows(pipeline.db, tenant.project_id) == []
    assert await pipeline.db.query("SELECT path FROM media_keys") == []
    assert await pipeline.db.query("SELECT id FROM event_inbox WHERE type = 'notification.due'") == []
