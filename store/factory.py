"""Build a `Database` from a URL: the one place that knows which adapter a URL means."""

from __future__ import annotations

from pathlib import Path

from store.port import Database

SQLITE_PREFIX = "sqlite:///"
D1_PREFIXES = ("d1+https://", "d1+http://")


async def open_database(url: str, d1_token: str | None = None) -> Database:
    """`sqlite:///relative/or//absolute/path.db` (the embedded default) or `d1+https://bridge-host`."""
    if url.startswith(SQLITE_PREFIX):
        from store.sqlite import SqliteDatabase  # noqa: PLC0415 - adapters load only when chosen

        return await SqliteDatabase.open(Path(url.removeprefix(SQLITE_PREFIX)))
    if url.startswith(D1_PREFIXES):
        from store.d1 import D1BridgeDatabase  # noqa: PLC0415 - adapters load only when chosen

        if not d1_token:
            raise ValueError("a d1+https:// DATABASE_URL needs D1_BRIDGE_TOKEN (the bridge Worker's secret)")
        return D1BridgeDatabase(url.removeprefix("d1+"), d1_token)
    raise ValueError(
        f"unsupported DATABASE_URL {url!r}: use sqlite:///path/to/file.db or d1+https://<bridge worker host>"
    )
