"""The D1 bridge Worker's HTTP surface, over real sockets, and `D1BridgeDatabase` against it.

The bridge runs under miniflare (workerd's D1) for the whole session: see `d1_bridge_url` in conftest.
Every test here works on its own throwaway tables, so it neither needs nor disturbs the migrated schema.
The last tests check the adapter's retry policy against a fake transport and need no bridge.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from store import (
    ConstraintViolation,
    Database,
    ParameterLimitExceeded,
    QueryError,
    Statement,
    TransientError,
    VersionConflict,
)
from store.d1 import BridgeAuthError, D1BridgeDatabase
from store.port import MAX_SQL_BYTES
from tests.conftest import D1_MIGRATION_TOKEN, D1_TOKEN

d1 = pytest.mark.d1


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def http(d1_bridge_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=d1_bridge_url, timeout=30) as client:
        yield client


@pytest.fixture
async def bridge_db(d1_bridge_url: str) -> AsyncIterator[D1BridgeDatabase]:
    database = D1BridgeDatabase(d1_bridge_url, D1_TOKEN)
    yield database
    await database.close()


@pytest.fixture
async def admin_db(d1_bridge_url: str) -> AsyncIterator[D1BridgeDatabase]:
    """The migrator's connection (migration token): the only one that may change the schema."""
    database = D1BridgeDatabase(d1_bridge_url, D1_MIGRATION_TOKEN, setting="D1_MIGRATION_TOKEN")
    yield database
    await database.close()


@pytest.fixture
async def table(admin_db: D1BridgeDatabase) -> AsyncIterator[str]:
    """A throwaway `t_<hex>(id TEXT PRIMARY KEY, n INTEGER)` made with the migration token, dropped afterwards."""
    name = unique("t")
    await admin_db.batch([Statement(f"CREATE TABLE {name} (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")])
    yield name
    await admin_db.batch([Statement(f"DROP TABLE IF EXISTS {name}")])


AUTH = {"authorization": f"Bearer {D1_TOKEN}"}


@d1
async def test_health_needs_no_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@d1
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": D1_TOKEN},
        {"authorization": f"Bearer {D1_TOKEN}{'x' * 500}"},
    ],
    ids=["missing", "wrong", "not-bearer", "token-prefix"],
)
@pytest.mark.parametrize("path", ["/batch", "/query"])
async def test_requests_without_the_right_token_are_refused(
    http: httpx.AsyncClient, headers: dict[str, str], path: str
) -> None:
    body = {"statements": [{"sql": "SELECT 1", "params": []}]} if path == "/batch" else {"sql": "SELECT 1"}
    response = await http.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert "message" in response.json()["error"]
    assert D1_TOKEN not in response.text


@d1
async def test_adapter_with_a_wrong_token_names_the_setting(d1_bridge_url: str) -> None:
    async with D1BridgeDatabase(d1_bridge_url, "not-the-token") as database:
        with pytest.raises(BridgeAuthError, match="SV_D1_BRIDGE_TOKEN"):
            await database.query("SELECT 1")
        assert database.requests == 1  # an auth failure is not retried
    assert issubclass(BridgeAuthError, QueryError)


@d1
@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        ("/batch", b"not json", "not valid JSON"),
        ("/batch", b"{}", "statements"),
        ("/batch", b'{"statements": []}', "statements"),
        ("/batch", b'{"statements": "SELECT 1"}', "statements"),
        ("/batch", b'{"statements": [{"sql": "SELECT ?", "params": 1}]}', "params"),
        ("/batch", b'{"statements": [{"sql": "SELECT ?", "params": [{"a": 1}]}]}', "params"),
        ("/batch", b'{"statements": [{"params": []}]}', "sql"),
        ("/batch", b'{"statements": ["SELECT 1"]}', "statements[0]"),
        ("/batches", b"{}", "units"),
        ("/batches", b'{"units": [["SELECT 1"]]}', "units[0]"),
        ("/batches", b'{"units": [{"statements": "SELECT 1"}]}', "units[0]"),
        ("/batches", b'{"units": [{"statements": [{"sql": ""}]}]}', "units[0].statements[0]"),
        ("/query", b'{"sql": ""}', "sql"),
        ("/query", b'{"sql": "SELECT ?", "params": "x"}', "params"),
        ("/query", b"[1, 2]", "sql"),
    ],
)
async def test_malformed_requests_are_400(
    http: httpx.AsyncClient, path: str, content: bytes, expected: str
) -> None:
    response = await http.post(path, content=content, headers=AUTH)
    assert response.status_code == 400, response.text
    assert expected in response.json()["error"]["message"]


@d1
async def test_more_than_1000_statements_is_400(http: httpx.AsyncClient) -> None:
    statements = [{"sql": "SELECT 1", "params": []}] * 1001
    response = await http.post("/batch", json={"statements": statements}, headers=AUTH)
    assert response.status_code == 400
    assert "1000" in response.json()["error"]["message"]


@d1
async def test_more_than_1000_statements_across_units_is_400(http: httpx.AsyncClient) -> None:
    unit = {"statements": [{"sql": "SELECT 1", "params": []}] * 501}
    response = await http.post("/batches", json={"units": [unit, unit]}, headers=AUTH)
    assert response.status_code == 400
    assert "1000" in response.json()["error"]["message"]


@d1
async def test_group_commit_is_one_request_and_each_unit_answers_its_own_outcome(
    bridge_db: D1BridgeDatabase, table: str
) -> None:
    before = bridge_db.requests
    results = await bridge_db.batches([
        [Statement(f"INSERT INTO {table} (id, n) VALUES ('a', 1)")],
        [Statement(f"INSERT INTO {table} (id, n) VALUES ('b', 2)"),
         Statement(f"INSERT INTO {table} (id) VALUES ('a')")],
        [],
        [Statement(f"UPDATE {table} SET n = n + 1 WHERE id = 'a'")],
    ])
    assert bridge_db.requests == before + 1
    assert results[0] == [1]
    assert results[2] == []
    assert results[3] == [1]
    assert isinstance(results[1], ConstraintViolation)
    rows = await bridge_db.query(f"SELECT id, n FROM {table} ORDER BY id")
    assert rows == [{"id": "a", "n": 2}]
    assert await bridge_db.batches([[], []]) == [[], []]
    assert bridge_db.requests == before + 2  # nothing to send, nothing sent


@d1
async def test_unknown_path_is_404_and_wrong_method_405(http: httpx.AsyncClient) -> None:
    assert (await http.get("/nope", headers=AUTH)).status_code == 404
    wrong = await http.get("/batch", headers=AUTH)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert (await http.post("/health")).status_code == 405


@d1
async def test_d1_errors_are_500_with_d1s_message(http: httpx.AsyncClient) -> None:
    # Not a data statement the application token may send (403): the migrator's token passes it to D1.
    response = await http.post("/query", json={"sql": "SELEC 1", "params": []},
                               headers={"authorization": f"Bearer {D1_MIGRATION_TOKEN}"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"message": 'D1_ERROR: near "SELEC": syntax error at offset 0: SQLITE_ERROR'}
    }
    missing = await http.post("/query", json={"sql": "SELECT * FROM no_such_table_here", "params": []},
                              headers=AUTH)
    assert missing.status_code == 500
    assert "no such table: no_such_table_here" in missing.json()["error"]["message"]


@d1
async def test_batch_returns_rows_changes_and_last_row_id(http: httpx.AsyncClient, table: str) -> None:
    response = await http.post(
        "/batch",
        headers=AUTH,
        json={
            "statements": [
                {"sql": f"INSERT INTO {table} (id, n) VALUES (?, ?), (?, ?)", "params": ["a", 1, "b", 2]},
                {"sql": f"SELECT id, n FROM {table} ORDER BY id", "params": []},
            ]
        },
    )
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert first["changes"] == 2
    assert isinstance(first["last_row_id"], int)
    assert second["rows"] == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]


@d1
async def test_a_batch_that_fails_midway_writes_nothing(bridge_db: D1BridgeDatabase, table: str) -> None:
    with pytest.raises(ConstraintViolation, match="UNIQUE"):
        await bridge_db.batch(
            [
                Statement(f"INSERT INTO {table} (id, n) VALUES ('a', 1)"),
                Statement(f"UPDATE {table} SET n = 2 WHERE id = 'a'"),
                Statement(f"INSERT INTO {table} (id, n) VALUES ('a', 3)"),  # duplicate primary key
                Statement(f"INSERT INTO {table} (id, n) VALUES ('z', 4)"),
            ]
        )
    assert await bridge_db.query(f"SELECT * FROM {table}") == []


@d1
async def test_query_many_is_one_request_with_rows_per_statement(
    bridge_db: D1BridgeDatabase, table: str
) -> None:
    await bridge_db.batch([Statement(f"INSERT INTO {table} (id, n) VALUES (?, ?), (?, ?)", ("a", 1, "b", 2))])
    before = bridge_db.requests
    results = await bridge_db.query_many(
        [
            Statement(f"SELECT id FROM {table} WHERE n = ?", (2,)),
            Statement(f"SELECT id FROM {table} WHERE id = 'missing'"),
            Statement(f"SELECT count(*) AS n FROM {table}"),
        ]
    )
    assert results == [[{"id": "b"}], [], [{"n": 2}]]
    assert bridge_db.requests == before + 1
    assert await bridge_db.query_many([]) == []
    assert bridge_db.requests == before + 1  # nothing to send, nothing sent


@d1
async def test_batch_returns_changes_per_statement(bridge_db: D1BridgeDatabase, table: str) -> None:
    changes = await bridge_db.batch(
        [
            Statement(f"INSERT INTO {table} (id, n) VALUES ('a', 1), ('b', 1), ('c', 1)"),
            Statement(f"UPDATE {table} SET n = n + 1 WHERE id <> 'c'"),
            Statement(f"DELETE FROM {table} WHERE id = 'missing'"),
        ]
    )
    assert changes == [3, 2, 0]


@d1
async def test_d1_enforces_foreign_keys(bridge_db: D1BridgeDatabase, admin_db: D1BridgeDatabase) -> None:
    parent, child = unique("parent"), unique("child")
    await admin_db.batch(
        [
            Statement(f"CREATE TABLE {parent} (id TEXT PRIMARY KEY)"),
            Statement(
                f"CREATE TABLE {child} (id TEXT PRIMARY KEY, parent_id TEXT NOT NULL REFERENCES {parent}(id))"
            ),
        ]
    )
    try:
        assert await admin_db.query("PRAGMA foreign_keys") == [{"foreign_keys": 1}]
        with pytest.raises(ConstraintViolation, match="FOREIGN KEY constraint failed"):
            await bridge_db.batch([Statement(f"INSERT INTO {child} (id, parent_id) VALUES ('c', 'nobody')")])
        assert await bridge_db.query(f"SELECT * FROM {child}") == []
    finally:
        await admin_db.batch([Statement(f"DROP TABLE {child}"), Statement(f"DROP TABLE {parent}")])


@d1
async def test_raise_abort_from_instead_of_trigger_is_version_conflict(
    bridge_db: D1BridgeDatabase, admin_db: D1BridgeDatabase, table: str
) -> None:
    view = unique("assert")
    await admin_db.batch(
        [
            Statement(f"CREATE VIEW {view} AS SELECT 1 AS ok"),
            Statement(
                f"CREATE TRIGGER {view}_abort INSTEAD OF INSERT ON {view} WHEN NEW.ok = 0 "
                "BEGIN SELECT RAISE(ABORT, 'version_conflict'); END"
            ),
        ]
    )
    try:
        await bridge_db.batch([Statement(f"INSERT INTO {table} (id, n) VALUES ('a', 1)")])
        with pytest.raises(VersionConflict, match="version_conflict") as raised:
            await bridge_db.batch(
                [
                    Statement(f"UPDATE {table} SET n = 2 WHERE id = 'a'"),
                    Statement(
                        f"INSERT INTO {view} (ok) SELECT count(*) FROM {table} WHERE id = ? AND n = ?",
                        ("a", 1),
                    ),
                ]
            )
        assert "SQLITE_CONSTRAINT_TRIGGER" in str(raised.value)
        assert await bridge_db.query(f"SELECT n FROM {table}") == [{"n": 1}]  # rolled back
        # The assertion passes when the row is as expected, and the batch commits.
        await bridge_db.batch(
            [
                Statement(
                    f"INSERT INTO {view} (ok) SELECT count(*) FROM {table} WHERE id = ? AND n = ?", ("a", 1)
                ),
                Statement(f"UPDATE {table} SET n = 2 WHERE id = 'a'"),
            ]
        )
        assert await bridge_db.query(f"SELECT n FROM {table}") == [{"n": 2}]
    finally:
        await admin_db.batch([Statement(f"DROP VIEW {view}")])  # drops its trigger too


@d1
async def test_limits_are_enforced_before_sending(bridge_db: D1BridgeDatabase) -> None:
    before = bridge_db.requests
    with pytest.raises(ParameterLimitExceeded, match="100"):
        await bridge_db.query("SELECT " + ", ".join("?" * 101), [1] * 101)
    with pytest.raises(QueryError, match="bytes"):
        await bridge_db.batch([Statement("SELECT 1 -- " + "x" * MAX_SQL_BYTES)])
    with pytest.raises(QueryError, match="precision"):
        await bridge_db.query("SELECT ?", [2**53])
    assert bridge_db.requests == before
    # exactly at the limit is fine
    assert await bridge_db.query("SELECT " + " + ".join("?" * 100) + " AS s", [1] * 100) == [{"s": 100}]


@d1
async def test_booleans_are_sent_as_0_and_1(bridge_db: D1BridgeDatabase, table: str) -> None:
    await bridge_db.batch(
        [Statement(f"INSERT INTO {table} (id, n) VALUES (?, ?), (?, ?)", ("t", True, "f", False))]
    )
    rows = await bridge_db.query(f"SELECT id, n, typeof(n) AS t FROM {table} ORDER BY id")
    assert rows == [{"id": "f", "n": 0, "t": "integer"}, {"id": "t", "n": 1, "t": "integer"}]


@d1
async def test_the_adapter_satisfies_the_port(bridge_db: D1BridgeDatabase) -> None:
    database: Database = bridge_db
    assert await database.query("SELECT 'ok' AS v") == [{"v": "ok"}]
    assert D1_TOKEN not in repr(bridge_db)


# --- the retry policy, against a fake transport (no bridge needed) -------------------------------


def fake(responses: list[Callable[[httpx.Request], httpx.Response]]) -> tuple[D1BridgeDatabase, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return responses[min(len(seen), len(responses)) - 1](request)

    db = D1BridgeDatabase(
        "d1+https://bridge.example", "t0ken", backoff=0.001, transport=httpx.MockTransport(handler)
    )
    return db, seen


def d1_error(message: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(500, json={"error": {"message": message}})


def ok_batch(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"results": [{"rows": [], "changes": 1, "last_row_id": 1}]})


def connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_retry_safe_d1_errors_are_retried_then_succeed() -> None:
    db, seen = fake([d1_error("D1_ERROR: Network connection lost."), connect_error, ok_batch])
    assert await db.batch([Statement("INSERT INTO x VALUES (1)")]) == [1]
    assert db.requests == 3
    assert seen == ["/batch"] * 3
    await db.close()


async def test_retries_are_bounded_and_end_in_transient_error() -> None:
    db, _ = fake([d1_error("D1_ERROR: D1 DB is overloaded. Too many requests queued.")])
    with pytest.raises(TransientError, match="4 attempts"):
        await db.batch([Statement("INSERT INTO x VALUES (1)")])
    assert db.requests == 4
    await db.close()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("D1_ERROR: UNIQUE constraint failed: x.id: SQLITE_CONSTRAINT", ConstraintViolation),
        (
            "D1_ERROR: version_conflict: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_TRIGGER)",
            VersionConflict,
        ),
        ("D1_ERROR: no such table: x: SQLITE_ERROR", QueryError),
    ],
)
async def test_permanent_errors_are_not_retried(message: str, error: type[Exception]) -> None:
    db, _ = fake([d1_error(message)])
    with pytest.raises(error):
        await db.batch([Statement("INSERT INTO x VALUES (1)")])
    assert db.requests == 1
    await db.close()


async def test_an_edge_503_is_transient_but_left_to_the_job_to_retry() -> None:
    db, _ = fake([lambda _: httpx.Response(503, text="<html>Service Unavailable</html>")])
    with pytest.raises(TransientError, match="503"):
        await db.query("SELECT 1")
    assert db.requests == 1
    await db.close()


async def test_a_timeout_after_sending_is_not_retried_by_the_adapter() -> None:
    """D1 may have committed: the job re-runs the guarded unit of work instead of the adapter resending."""

    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    db, seen = fake([read_timeout, ok_batch])
    with pytest.raises(TransientError, match="may have committed"):
        await db.batch([Statement("INSERT INTO x VALUES (1)")])
    assert seen == ["/batch"]
    await db.close()


async def test_a_bare_5xx_from_the_edge_or_a_crashed_worker_is_transient() -> None:
    db, _ = fake([lambda _: httpx.Response(522, text="origin timed out")])
    with pytest.raises(TransientError, match="522"):
        await db.query("SELECT 1")
    await db.close()
