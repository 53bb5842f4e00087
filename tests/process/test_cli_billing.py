"""`studiovault billing close` as an operator runs it: a real CLI process on a SQLite file and Redis."""

from __future__ import annotations

import pytest

from store.sqlite import SqliteDatabase
from tests.integration.test_billing_close import inbox_keys, make_org
from tests.support.processes import cli, pipeline_env


@pytest.mark.slow
async def test_cli_closes_a_past_period_and_refuses_others(sqlite_db: SqliteDatabase, redis_url: str) -> None:
    org = await make_org(sqlite_db)
    env = pipeline_env(f"sqlite:///{sqlite_db.path}", redis_url)
    done = cli(env, "billing", "close", "--period", "2026-10")
    assert done.returncode == 0, done.stderr
    assert "published 1 closes" in done.stdout
    assert await inbox_keys(sqlite_db) == [f"billing:{org}:2026-10"]
    rerun = cli(env, "billing", "close", "--period", "2026-10")
    assert "published 0 closes, 1 already published" in rerun.stdout
    for bad in ("2026-13", "2099-01"):
        refused = cli(env, "billing", "close", "--period", bad)
        assert refused.returncode == 2, refused.stdout
