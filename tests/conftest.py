"""Shared fixtures: real Redis, the SQLite file adapter and D1 (the bridge Worker under miniflare)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from store import Database
from store.migrate import migrate
from store.sqlite import SqliteDatabase
from tests.support.pipeline import Pipeline, fast_settings
from tests.support.redis_server import redis_server

D1_TOKEN = "test-bridge-token"  # a throwaway secret for the local bridge: the application's (data only)
D1_MIGRATION_TOKEN = "test-migration-token"  # the migrator's (schema changes)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the whole session, on a free loopback port."""
    with redis_server() as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def d1_bridge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The D1 bridge Worker, running under miniflare (workerd's D1), for the whole session."""
    from tests.support.d1bridge import start_bridge  # noqa: PLC0415 - only D1 tests pay for node

    with start_bridge(tmp_path_factory.mktemp("d1"), D1_TOKEN, D1_MIGRATION_TOKEN) as url:
        yield url


async def _sqlite(path: Path) -> SqliteDatabase:
    db = await SqliteDatabase.open(path)
    await migrate(db)
    return db


async def _d1(url: str, token: str = D1_TOKEN) -> Database:
    """Reset and migrate with the migration token (as `studiovault migrate` does); then a connection with
    `token`: the application's unless a test inspects the schema."""
    from store.d1 import D1BridgeDatabase  # noqa: PLC0415
    from tests.support.d1bridge import reset_d1  # noqa: PLC0415

    async with D1BridgeDatabase(url, D1_MIGRATION_TOKEN, setting="D1_MIGRATION_TOKEN") as admin:
        await reset_d1(admin)
        await migrate(admin)
    return D1BridgeDatabase(url, token)


@pytest.fixture(params=["sqlite", pytest.param("d1", marks=pytest.mark.d1)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database: every test using it runs on both adapters. On D1 it holds the
    application token, as workers and the ingress do: data statements only."""
    if request.param == "sqlite":
        database: Database = await _sqlite(tmp_path / "studiovault.db")
    else:
        database = await _d1(request.getfixturevalue("d1_bridge_url"))
    yield database
    await database.close()


@pytest.fixture(params=["sqlite", pytest.param("d1", marks=pytest.mark.d1)])
async def schema_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """As `db`, but on D1 with the migration token: for tests that read the schema (PRAGMA, sqlite_master)."""
    if request.param == "sqlite":
        database: Database = await _sqlite(tmp_path / "studiovault.db")
    else:
        database = await _d1(request.getfixturevalue("d1_bridge_url"), D1_MIGRATION_TOKEN)
    yield database
    await database.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    """A migrated SQLite file, for tests about the local adapter or the pipeline on its default."""
    database = await _sqlite(tmp_path / "studiovault.db")
    yield database
    await database.close()



@pytest.fixture
async def pipeline(sqlite_db: SqliteDatabase, redis_url: str, redis: aioredis.Redis) -> AsyncIterator[Pipeline]:
    """A pipeline on a fresh SQLite file and a flushed Redis; start workers with `pipeline.start_worker()`."""
    settings = fast_settings(f"sqlite:///{sqlite_db.path}", redis_url)
    harness = await Pipeline.create(settings, sqlite_db)
    yield harness
    await harness.close()
