"""The `Database` port: what handlers, the inbox and the migrator need from D1 or its local stand-in.

D1 has no interactive transactions: a unit of work reads first, then runs ONE batch that either
commits entirely or not at all. Checks that must hold at commit time are statements inside the batch
(`expect_version`, `expect_rows`): when one fails, the whole batch aborts with a typed error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from store.errors import DatabaseError

# A value D1 can bind: NULL, INTEGER, REAL, TEXT. Booleans are bound as 0/1 by the adapters.
SqlValue = None | int | float | str | bool

# D1's limit on bound parameters per statement. Both adapters enforce it, so code that passes
# against the local file also passes against D1.
MAX_PARAMS = 100
# D1's limit on the length of one SQL statement.
MAX_SQL_BYTES = 100_000
# D1 passes numbers through JavaScript: integers beyond 2^53 - 1 would silently lose precision.
MAX_SAFE_INTEGER = 2**53 - 1

Row = dict[str, Any]


class Statement(NamedTuple):
    """One SQL statement and its positional parameters."""

    sql: str
    params: tuple[SqlValue, ...] = ()


class Database(Protocol):
    """A D1-shaped database: reads, and atomic batches of writes."""

    async def query(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        """Run one read and return its rows as dicts."""
        ...

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        """Run several reads in one round trip, returning each one's rows."""
        ...

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        """Run the statements as one transaction; return the rows each one changed.

        Raises `VersionConflict`, `AlreadyApplied`, `ConstraintViolation`, `TransientError`, ... and
        then nothing of the batch was written.
        """
        ...

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        """Group commit: run each unit as its own all-or-nothing batch, in order, in as few engine calls
        as the engine allows (SQLite: one transaction, a savepoint per unit; D1: one bridge request).

        A unit's own failure (`VersionConflict`, `AlreadyApplied`, `ConstraintViolation`, a limit or
        SQL error) is returned in its slot, and fails that unit only; the others commit. A failure of
        the call itself (`TransientError`, `DatabaseUnavailable`) raises, and then no unit may be
        assumed committed (nor uncommitted: their guards make a replay harmless, as for `batch`).
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def expect_version(table: str, row_id: str, version: int) -> Statement:
    """A batch statement that aborts the batch with `VersionConflict` unless `table.id` is at `version`."""
    return Statement(
        f"INSERT INTO _assert(ok, code) SELECT count(*), 'version' FROM {table} WHERE id = ? AND version = ?",
        (row_id, version),
    )


def expect_rows(select_count_sql: str, params: Sequence[SqlValue], code: str = "version") -> Statement:
    """Abort the batch unless `select_count_sql` (a `SELECT count(*) ...`) is non-zero.

    `code` is `version` (raises `VersionConflict`) or `inbox` (raises `AlreadyApplied`).
    """
    if code not in ("version", "inbox"):
        raise ValueError(f"unknown assertion code {code!r}: use 'version' or 'inbox'")
    return Statement(f"INSERT INTO _assert(ok, code) SELECT ({select_count_sql}), '{code}'", tuple(params))


_ASSERT = "INSERT INTO _assert(ok, code) SELECT "


def as_check(statement: Statement) -> Statement | None:
    """A version assertion (`expect_version`, `expect_rows`) as the read it makes: its first column is
    the `ok` the batch would test. None for any other statement (the inbox guard included)."""
    if not statement.sql.startswith(_ASSERT) or not statement.sql.endswith(", 'version'"):
        return None
    return Statement("SELECT " + statement.sql[len(_ASSERT):], statement.params)


async def query_in(
    db: Database,
    sql: str,
    values: Sequence[SqlValue],
    params_before: Sequence[SqlValue] = (),
    params_after: Sequence[SqlValue] = (),
) -> list[Row]:
    """Run `sql` whose `{in}` placeholder becomes `?, ?, ...` for `values`, chunked under D1's limit.

    Example: `await query_in(db, "SELECT * FROM invoices WHERE branch_id = ? AND id IN ({in})",
    ids, params_before=[branch])`. The chunks run in one round trip; rows come back in chunk order.
    """
    if "{in}" not in sql:
        raise ValueError("query_in needs an '{in}' placeholder in the SQL")
    room = MAX_PARAMS - len(params_before) - len(params_after)
    if room < 1:
        raise ValueError(f"query_in: {len(params_before) + len(params_after)} fixed parameters leave no room")
    if not values:
        return []
    statements = [
        Statement(
            sql.replace("{in}", ", ".join("?" * len(chunk))),
            (*params_before, *chunk, *params_after),
        )
        for chunk in (values[i : i + room] for i in range(0, len(values), room))
    ]
    results = await db.query_many(statements)
    return [row for rows in results for row in rows]
