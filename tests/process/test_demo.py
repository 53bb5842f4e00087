"""A newcomer's first run: `studiovault demo seed` then `demo pay` shows an invoice become paid, no SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.sqlite import SqliteDatabase
from tests.support.cluster import Cluster
from tests.support.processes import cli
from tests.support.redis_server import RedisProcess

pytestmark = pytest.mark.slow


async def test_demo_seed_then_pay_turns_the_demo_invoice_paid_through_the_running_pipeline(
    sqlite_db: SqliteDatabase, tmp_path: Path
) -> None:
    cluster = Cluster(sqlite_db, f"sqlite:///{sqlite_db.path}", RedisProcess(tmp_path / "redis"), tmp_path, workers=1)
    await cluster.start(tenants=0)
    try:
        seeded = cli(cluster.env, "demo", "seed")
        assert seeded.returncode == 0, seeded.stderr
        assert "./dev sv demo pay" in seeded.stdout
        paid = cli(cluster.env, "demo", "pay", "--url", cluster.url)
        assert paid.returncode == 0, paid.stdout + paid.stderr
        assert "ingress answered 200" in paid.stdout
        assert ": paid; project active" in paid.stdout
        rows = await sqlite_db.query("SELECT status FROM invoices")
        assert rows == [{"status": "paid"}]
        (txn,) = await sqlite_db.query("SELECT status, amount FROM transactions")
        assert (txn["status"], txn["amount"]) == ("paid", 1180.0)
    finally:
        cluster.stop()


def test_demo_pay_without_a_seed_says_what_to_do(sqlite_db: SqliteDatabase, redis_url: str) -> None:
    from tests.support.processes import pipeline_env  # noqa: PLC0415

    done = cli(pipeline_env(f"sqlite:///{sqlite_db.path}", redis_url), "demo", "pay")
    assert done.returncode == 1
    assert "run `studiovault demo seed` first" in done.stderr
