"""The database adapter a `SV_DATABASE_URL` means: the SQLite file or D1 through the bridge Worker.

On D1 the bridge holds two kinds of token: the application's (`SV_D1_BRIDGE_TOKEN`: data statements
only) for workers, the ingress and the operator commands, and the migrator's (`SV_D1_MIGRATION_TOKEN`:
schema changes) for `studiovault migrate` alone (`open_database(..., purpose="migrate")`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from config import DatabaseSettings
from config.sections import SQLITE_PREFIX
from store.port import Database


async def open_database(cfg: DatabaseSettings, purpose: Literal["app", "migrate"] = "app") -> Database:
    """`sqlite:///relative/or//absolute/path.db` (the embedded default) or `d1+https://bridge-host`."""
    if cfg.database_url.startswith(SQLITE_PREFIX):
        from store.sqlite import SqliteDatabase  # noqa: PLC0415 - adapters load only when chosen

        return await SqliteDatabase.open(Path(cfg.database_url.removeprefix(SQLITE_PREFIX)))
    from store.d1 import D1BridgeDatabase  # noqa: PLC0415 - adapters load only when chosen

    url = cfg.database_url.removeprefix("d1+")
    if purpose == "migrate":
        if cfg.d1_migration_token is None:
            raise ValueError("migrating D1 needs SV_D1_MIGRATION_TOKEN (the bridge Worker's MIGRATION_TOKEN): the"
                             " application token SV_D1_BRIDGE_TOKEN may not change the schema")
        return D1BridgeDatabase(url, cfg.d1_migration_token.get_secret_value(), setting="D1_MIGRATION_TOKEN")
    if cfg.d1_bridge_token is None:  # load_settings refuses this; a hand-built Settings may not
        raise ValueError("a d1+https:// SV_DATABASE_URL needs SV_D1_BRIDGE_TOKEN (the bridge Worker's secret)")
    return D1BridgeDatabase(url, cfg.d1_bridge_token.get_secret_value())
