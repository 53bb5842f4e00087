"""Helpers for the media tests: R2 notifications and media events for a tenant's project, and a way to
apply one event through the real unit of work (`workers.apply.apply_event`) on any `Database` adapter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from events.envelope import Envelope, envelope_for
from events.media import MediaDeleted, MediaUploaded
from events.media_keys import build_key
from events.publish import Publisher
from handlers.routes import ROUTER
from jobqueue.arq_redis import ArqQueue, connect
from store import Database
from tests.support.factories import Tenant
from tests.support.pipeline import fast_settings
from workers.apply import apply_event
from workers.deps import Deps
from workers.policy import Backoff

BUCKET = "studiovault-media"
NOW = datetime(2026, 9, 21, 14, 13, 20, tzinfo=UTC)  # 1_790_000_000 s


def key_for(t: Tenant, file_type: str = "delivery", name: str = "IMG_0001.jpg") -> str:
    return build_key(t.org_id, t.branch_id, t.project_id, file_type, name)


def at(seconds: float) -> datetime:
    """An R2 eventTime `seconds` after 10:00:00Z on the test day."""
    return datetime.fromtimestamp(1_789_984_800 + seconds, tz=UTC)


def uploaded(t: Tenant, when: datetime, size: int, etag: str, *, file_type: str = "delivery",
             name: str = "IMG_0001.jpg", key: str | None = None) -> MediaUploaded:
    return MediaUploaded(org_id=t.org_id, branch_id=t.branch_id, project_id=t.project_id, bucket=BUCKET,
                         key=key or key_for(t, file_type, name), file_type=file_type,  # type: ignore[arg-type]
                         size_bytes=size, etag=etag, event_time=when)


def deleted(t: Tenant, when: datetime, file_type: str = "delivery", name: str = "IMG_0001.jpg") -> MediaDeleted:
    return MediaDeleted(org_id=t.org_id, branch_id=t.branch_id, project_id=t.project_id, bucket=BUCKET,
                        key=key_for(t, file_type, name), file_type=file_type,  # type: ignore[arg-type]
                        event_time=when)


def envelope(event: MediaUploaded | MediaDeleted, dedupe_key: str, org_id: str | None = None,
             branch_id: str | None = None) -> Envelope:
    return envelope_for(event, org_id=org_id or event.org_id, branch_id=branch_id or event.branch_id,
                        dedupe_key=dedupe_key, occurred_at=event.event_time)


def r2_message(key: str, action: str = "PutObject", size: int | None = 1000, etag: str | None = "e1",
               when: str = "2026-09-21T10:00:00.123Z") -> dict[str, Any]:
    """An R2 event notification body, as R2 puts it on the queue."""
    obj: dict[str, Any] = {"key": key}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    return {"account": "3f4b7e3dcab231cbfdaa90a6a28bd548", "action": action, "bucket": BUCKET, "object": obj,
            "eventTime": when}


class Applier:
    """Publish an envelope (inbox row + enqueue) and apply it at once with the real unit of work."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def apply(self, env: Envelope) -> str:
        published = await self.deps.publisher.publish(env)
        assert not published.duplicate, "give each test event its own dedupe key"
        ctx = {"deps": self.deps, "job_try": 1, "job_id": env.event_id}
        return await apply_event(ctx, env.model_dump_json())

    async def inbox(self, event_id: str) -> dict[str, Any]:
        rows = await self.deps.db.query("SELECT status, last_error FROM event_inbox WHERE id = ?", (event_id,))
        return rows[0]


@asynccontextmanager
async def applier(db: Database, redis_url: str) -> AsyncIterator[Applier]:
    settings = fast_settings("sqlite:///unused.db", redis_url)
    redis = await connect(redis_url, settings.queue.queue_name)
    queue = ArqQueue(redis, settings.queue.queue_name)
    clock = lambda: NOW  # noqa: E731
    deps = Deps(settings=settings, db=db, queue=queue, publisher=Publisher(db, queue, clock), router=ROUTER,
                clock=clock, backoff=Backoff(0.01, 0.2))
    try:
        yield Applier(deps)
    finally:
        await redis.aclose()


async def media_rows(db: Database, project_id: str) -> list[dict[str, Any]]:
    return await db.query("SELECT id, path, file_type, size_bytes, watermark_state, uploaded_at, version"
                          " FROM media_objects WHERE project_id = ? ORDER BY path", (project_id,))


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
