"""The database adapter a `SV_DATABASE_URL` means: the SQLite file or D1 through the bridge Worker."""

from __future__ import annotations

from pathlib import Path

from config import DatabaseSettings
from config.sections import SQLITE_PREFIX
from store.port import Database


async def open_database(cfg: DatabaseSettings) -> Database:
    """`sqlite:///relative/or//absolute/path.db` (the embedded default) or `d1+https://bridge-host`."""
    if cfg.database_url.startswith(SQLITE_PREFIX):
        from store.sqlite import SqliteDatabase  # noqa: PLC0415 - adapters load only when chosen

        return await SqliteDatabase.open(Path(cfg.database_url.removeprefix(SQLITE_PREFIX)))
    from store.d1 import D1BridgeDatabase  # noqa: PLC0415 - adapters load only when chosen

    if cfg.d1_bridge_token is None:  # load_settings refuses this; a hand-built Settings may not
        raise ValueError("a d1+https:// SV_DATABASE_URL needs SV_D1_BRIDGE_TOKEN (the bridge Worker's secret)")
    return D1BridgeDatabase(cfg.database_url.removeprefix("d1+"), cfg.d1_bridge_token.get_secret_value())
