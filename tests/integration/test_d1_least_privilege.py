"""The D1 bridge's two tokens, under miniflare: the application token runs data statements only, the
migration token runs anything; both are lists (rotation); refusals are 401/403 with no detail."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from store import Statement
from store.d1 import BridgeForbidden, D1BridgeDatabase
from store.migrate import migrate, state
from tests.conftest import D1_MIGRATION_TOKEN, D1_TOKEN
from tests.support.d1bridge import start_bridge

pytestmark = pytest.mark.d1

APP = {"authorization": f"Bearer {D1_TOKEN}"}
MIGRATOR = {"authorization": f"Bearer {D1_MIGRATION_TOKEN}"}


@pytest.fixture
async def http(d1_bridge_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the session's bridge, whose database is migrated (by the migrator's token)."""
    async with D1BridgeDatabase(d1_bridge_url, D1_MIGRATION_TOKEN, setting="D1_MIGRATION_TOKEN") as admin:
        await migrate(admin)
    async with httpx.AsyncClient(base_url=d1_bridge_url, timeout=30) as client:
        yield client


@pytest.fixture
async def table(http: httpx.AsyncClient) -> AsyncIterator[str]:
    name = f"lp_{uuid.uuid4().hex[:12]}"
    made = await http.post("/query", json={"sql": f"CREATE TABLE {name} (id TEXT PRIMARY KEY, n INTEGER)"},
                           headers=MIGRATOR)
    assert made.status_code == 200, made.text
    yield name
    await http.post("/query", json={"sql": f"DROP TABLE IF EXISTS {name}"}, headers=MIGRATOR)


async def schema(http: httpx.AsyncClient) -> list[dict[str, object]]:
    response = await http.post("/query", json={"sql": "SELECT type, name, sql FROM sqlite_master ORDER BY name"},
                               headers=MIGRATOR)
    assert response.status_code == 200, response.text
    rows: list[dict[str, object]] = response.json()["rows"]
    return rows


async def test_ddl_under_the_application_token_is_refused_and_changes_nothing(
    http: httpx.AsyncClient, table: str
) -> None:
    before = await schema(http)
    batch = {"statements": [{"sql": f"INSERT INTO {table} (id, n) VALUES ('a', 1)", "params": []},
                            {"sql": f"DROP TABLE {table}", "params": []},
                            {"sql": "CREATE TABLE stolen (x)", "params": []}]}
    response = await http.post("/batch", json=batch, headers=APP)
    assert response.status_code == 403
    assert response.json() == {"error": {"message": "forbidden"}}  # no detail: what was refused is not said
    assert await schema(http) == before
    rows = await http.post("/query", json={"sql": f"SELECT count(*) AS n FROM {table}"}, headers=APP)
    assert rows.json() == {"rows": [{"n": 0}]}  # the INSERT before the DDL did not run either


async def test_one_refused_statement_in_any_unit_refuses_the_whole_group_commit(
    http: httpx.AsyncClient, table: str
) -> None:
    before = await schema(http)
    units = {"units": [{"statements": [{"sql": f"INSERT INTO {table} (id, n) VALUES ('a', 1)"}]},
                       {"statements": [{"sql": f"INSERT INTO {table} (id, n) VALUES ('b', 2)"},
                                       {"sql": f"DROP TABLE {table}"}]}]}
    response = await http.post("/batches", json=units, headers=APP)
    assert response.status_code == 403
    assert response.json() == {"error": {"message": "forbidden"}}
    assert await schema(http) == before
    rows = await http.post("/query", json={"sql": f"SELECT count(*) AS n FROM {table}"}, headers=APP)
    assert rows.json() == {"rows": [{"n": 0}]}  # not even the first, allowed, unit ran


REFUSED = [
    "CREATE TABLE x (a)",
    "  \n\t create table x (a)",
    "-- a comment first\nDROP TABLE invoices",
    "/* SELECT */ DROP TABLE invoices",
    "ALTER TABLE invoices ADD COLUMN x TEXT",
    "CREATE TRIGGER t AFTER INSERT ON invoices BEGIN DELETE FROM invoices; END",
    "PRAGMA foreign_keys = OFF",
    "pragma table_info(invoices)",
    "SELECT * FROM pragma_table_info('invoices')",
    "ATTACH DATABASE 'x.db' AS x",
    "VACUUM",
    "REINDEX",
    "BEGIN",
    "SELECT * FROM sqlite_master",
    'SELECT sql FROM "sqlite_schema"',
    "SELECT * FROM main.[sqlite_master]",
    "SELECT * FROM `sqlite_sequence`",
    "SELECT 1; DROP TABLE invoices",
    "SELECT 'unterminated",
    "INSERT INTO d1_migrations (name) VALUES ('9999_fake.sql')",
    "DELETE FROM \"d1_migrations\"",
    "WITH gone AS (SELECT 1) DELETE FROM d1_migrations",
    "EXPLAIN SELECT 1",
]


@pytest.mark.parametrize("sql", REFUSED)
async def test_the_application_token_may_not_run(http: httpx.AsyncClient, sql: str) -> None:
    units = [{"statements": [{"sql": "SELECT 1"}]}, {"statements": [{"sql": sql}]}]
    for path, body in (("/query", {"sql": sql}), ("/batch", {"statements": [{"sql": sql}]}),
                       ("/batches", {"units": units})):
        response = await http.post(path, json=body, headers=APP)
        assert response.status_code == 403, (path, sql, response.text)
        assert response.json() == {"error": {"message": "forbidden"}}


async def test_data_statements_in_every_form_the_pipeline_uses_run_under_the_application_token(
    http: httpx.AsyncClient, table: str
) -> None:
    statements = [
        f"  -- leading comment and whitespace\n INSERT INTO {table} (id, n) VALUES ('a', 1);",
        f"/* block */ REPLACE INTO {table} (id, n) VALUES ('a', 2)",
        f"INSERT OR REPLACE INTO {table} (id, n) VALUES ('b', 3)",
        f"INSERT INTO {table} (id, n) SELECT 'c', n + 1 FROM {table} WHERE id = 'b'",
        f"WITH bumped AS (SELECT id FROM {table} WHERE n > 2) UPDATE {table} SET n = n * 10"
        " WHERE id IN (SELECT id FROM bumped)",
        f"UPDATE {table} SET n = n WHERE id = 'this is not a CREATE TABLE or ; DROP'",
        f"DELETE FROM {table} WHERE id = 'nobody'",
        "INSERT INTO _assert(ok, code) SELECT 1, 'version'",
        "SELECT name FROM d1_migrations ORDER BY id",
        "VALUES (1), (2)",
    ]
    response = await http.post("/batch", json={"statements": [{"sql": s} for s in statements]}, headers=APP)
    assert response.status_code == 200, response.text
    rows = await http.post("/query", json={"sql": f"SELECT id, n FROM {table} ORDER BY id"}, headers=APP)
    assert rows.json()["rows"] == [{"id": "a", "n": 2}, {"id": "b", "n": 30}, {"id": "c", "n": 40}]


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer nope"}, {"authorization": D1_TOKEN}])
async def test_a_missing_or_unknown_token_gets_401_with_no_detail(http: httpx.AsyncClient,
                                                                   headers: dict[str, str]) -> None:
    response = await http.post("/query", json={"sql": "SELECT 1"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "unauthorized"}}


async def test_the_migrator_needs_the_migration_token(d1_bridge_url: str) -> None:
    async with D1BridgeDatabase(d1_bridge_url, D1_TOKEN) as app:
        applied_before = (await state(app)).applied  # the application token may read what is applied
        with pytest.raises(BridgeForbidden, match="SV_D1_MIGRATION_TOKEN"):
            await migrate(app)
        assert (await state(app)).applied == applied_before
    async with D1BridgeDatabase(d1_bridge_url, D1_MIGRATION_TOKEN, setting="D1_MIGRATION_TOKEN") as admin:
        await migrate(admin)
        assert (await state(admin)).pending == []


async def test_both_tokens_are_lists_for_rotation() -> None:
    """JSON list for one, comma list for the other; old and new both work until the old is removed."""
    with start_bridge(None, '["app-new", "app-old"]', "mig-new, mig-old") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for token in ("mig-new", "mig-old"):
                response = await http.post("/query", json={"sql": "CREATE TABLE IF NOT EXISTS r (a)"},
                                           headers={"authorization": f"Bearer {token}"})
                assert response.status_code == 200, response.text
            for token in ("app-new", "app-old"):
                auth = {"authorization": f"Bearer {token}"}
                ok = await http.post("/batch", json={"statements": [{"sql": "INSERT INTO r (a) VALUES (1)"}]},
                                     headers=auth)
                assert ok.status_code == 200, ok.text
                refused = await http.post("/query", json={"sql": "DROP TABLE r"}, headers=auth)
                assert refused.status_code == 403
            for token in ("app", "mig", "app-new,app-old", '["app-new", "app-old"]'):
                unknown = await http.post("/query", json={"sql": "SELECT 1"},
                                          headers={"authorization": f"Bearer {token}"})
                assert unknown.status_code == 401, token
        async with D1BridgeDatabase(url, "app-old") as db:
            assert await db.query("SELECT count(*) AS n FROM r") == [{"n": 2}]
            with pytest.raises(BridgeForbidden):
                await db.batch([Statement("DROP TABLE r")])
