"""`/readyz` of the ingress as the composition root wires it: ready only when every dependency is usable."""

from __future__ import annotations

from pathlib import Path

import httpx

from bootstrap.ingress import build_app
from store.migrate import migrate
from store.sqlite import SqliteDatabase
from tests.support.gateway import serve
from tests.support.pipeline import fast_settings


async def test_an_unmigrated_database_is_not_ready_until_migrated(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "fresh.db"
    settings = fast_settings(f"sqlite:///{path}", redis_url)
    async with serve(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        before = await http.get("/readyz")
        assert before.status_code == 503
        assert before.json()["checks"] == {"database": "ok", "migrations": "unavailable: Unavailable", "redis": "ok"}
        assert (await http.get("/healthz")).status_code == 200  # alive, just not ready
        db = await SqliteDatabase.open(path)
        try:
            await migrate(db)
        finally:
            await db.close()
        after = await http.get("/readyz")
        assert after.status_code == 200
        assert after.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "redis": "ok"}}
