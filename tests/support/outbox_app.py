"""The app side of the transactional outbox, for Python tests: `outbox/test/serve.mjs` runs the test app
Worker (Drizzle on D1, publishing through `@studiovault/outbox`) and the D1 bridge Worker on ONE D1
database under miniflare, so the app's batches and the Python pipeline (through the bridge) meet in the
same tables, as they do in production.

`start_outbox_app()` installs `outbox/`'s npm packages on first use, starts the server (migrations
applied by it, recorded as wrangler does) and yields its URLs; `AppClient` calls the app's routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.d1bridge import serve_node

OUTBOX_DIR = Path(__file__).resolve().parents[2] / "outbox"


@dataclass(frozen=True)
class OutboxApp:
    app_url: str
    bridge_url: str


@contextmanager
def start_outbox_app(token: str, persist_dir: Path | None = None, migration_token: str = "") -> Iterator[OutboxApp]:
    with serve_node(OUTBOX_DIR, "test/serve.mjs", persist_dir, token, migration_token=migration_token) as ready:
        yield OutboxApp(app_url=ready["app_url"], bridge_url=ready["bridge_url"])


class AppClient:
    """The test app Worker's routes: `POST /projects` (a project + its notification.due in one batch) and
    `POST /media` (a media_objects row + its media.uploaded), each with `api` "raw" or "drizzle"."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def create_project(self, **body: Any) -> httpx.Response:
        return await self.http.post("/projects", json=body)

    async def upload_media(self, **body: Any) -> httpx.Response:
        return await self.http.post("/media", json=body)
