"""The embedded default: a local SQLite file, behaving like D1.

D1-faithful on purpose: foreign keys on, 100 bound parameters and 100 KB per statement, no
transactions except `batch()`. A batch is `BEGIN IMMEDIATE ... COMMIT`, rolled back on any error;
`batches()` (group commit) is one such transaction with a SAVEPOINT per unit.
The file is in WAL mode, so reads (on their own connection) never wait for the writer.

Reads and writes run on the event loop's thread, each read snapshot or write batch as one synchronous
call. A unit of work's calls are short (well under a millisecond each to a few for a group commit) and
never wait inside SQLite: the reader and the writer both have `busy_timeout = 0`, and a locked file is
retried from here with `asyncio.sleep` between tries. Handing each call to a thread (aiosqlite) cost
more than most calls themselves: two thread switches and a wake-up of the loop per call, 17 % of the
worker's CPU at 200 events/s (README, Performance). The bulk of each checkpoint, which copies many
pages and waits on the disk, keeps a connection and a thread of its own (aiosqlite); only its short
last step runs on the writer (`_checkpoint`).

Several processes (workers, the ingress) may share the file. SQLite has one writer at a time: within
a process the writer connection is serialised by a lock; across processes a writer that finds the
file locked retries here every few milliseconds (`_LOCK_RETRY_S`) until `lock_wait` seconds, then
raises `TransientError`. A "database is locked" never reaches callers as a raw
`sqlite3.OperationalError`.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from store.errors import DatabaseError, ParameterLimitExceeded, QueryError, TransientError, classify
from store.port import MAX_PARAMS, MAX_SAFE_INTEGER, MAX_SQL_BYTES, Row, SqlValue, Statement

_BUSY_TIMEOUT_MS = 5_000  # while opening, and the checkpointer's (on its own thread)
# The reader and the writer do not sleep in SQLite's busy handler (it would block the event loop, and
# its waits grow 1, 2, 5, 10, 15, 20, 25 ms...: behind another process's stream of group commits a
# webhook's insert waited 60-80 ms that way). They retry from here instead, every 0.25 ms at first and
# at most every 4 ms.
_LOCK_RETRY_S = (0.00025, 0.004)
# SQLite's own auto-checkpoint runs inside the COMMIT that crosses 1,000 WAL pages, with the write lock
# held: ~10 ms, several times a second at 500 webhooks/s, and every request behind it waited. It is off
# on the writer; after every this many written statements a checkpoint runs on a connection and thread of
# its own, its bulk outside the write lock (`_checkpoint`).
_CHECKPOINT_EVERY = 200
# Page cache per connection, in KiB (SQLite's default is 2,000 on each). The reader's cache is emptied
# whenever another connection commits (WAL: the writer does, every few ms), so it only ever held the
# pages of the reads between two commits; and the checkpointer copies frames without it. Capped, the
# worker's peak RSS was 1.5-2 MB lower after 3,000 events, CPU per event unchanged. The writer keeps
# the B-tree pages its inserts and updates walk (every page not cached is one read from the OS's page
# cache): at 1,024 KiB instead of 2,000 the worker's peak RSS in `bench --only apply` went 64.7-65.0
# -> 63.8-64.2 MB with no change in events/s beyond the noise (6 interleaved runs each; 512 KiB saved
# 0.4 MB more and looked slower).
_WRITER_CACHE_KIB = 1024
_READER_CACHE_KIB = 256
_CHECKPOINTER_CACHE_KIB = 64
T = TypeVar("T")
A = TypeVar("A")


class _D1LimitedConnection(sqlite3.Connection):
    """A sqlite3 connection with D1's per-statement limits, enforced by the engine itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMS)
        self.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES)


def _check_limits(sql: str, params: Sequence[SqlValue]) -> None:
    if len(params) > MAX_PARAMS:
        raise ParameterLimitExceeded(
            f"{len(params)} bound parameters in one statement; D1 allows {MAX_PARAMS} "
            "(chunk IN lists with store.query_in)"
        )
    if any(isinstance(p, int) and abs(p) > MAX_SAFE_INTEGER for p in params):
        raise QueryError(f"an integer parameter exceeds ±{MAX_SAFE_INTEGER}: D1 cannot bind it exactly")
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise QueryError(f"statement is {len(sql.encode())} bytes; D1 allows {MAX_SQL_BYTES}")


def _error(exc: sqlite3.Error) -> DatabaseError:
    return classify(f"{exc} ({getattr(exc, 'sqlite_errorname', type(exc).__name__)})")


async def _pragma(conn: aiosqlite.Connection, pragma: str) -> None:
    # Close the cursor at once: an unfinished PRAGMA statement keeps a lock on the file.
    async with conn.execute(f"PRAGMA {pragma}") as cursor:
        await cursor.fetchall()


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


def _pragma_now(conn: sqlite3.Connection, pragma: str) -> None:
    cursor = conn.execute(f"PRAGMA {pragma}")
    try:
        cursor.fetchall()
    finally:
        cursor.close()  # an unfinished PRAGMA statement keeps a lock on the file


def _read_snapshot(raw: sqlite3.Connection, statements: Sequence[Statement]) -> list[list[Row]]:
    """Several reads in one snapshot, as D1's batch gives."""
    snapshot = len(statements) > 1
    if snapshot:
        raw.execute("BEGIN")
    try:
        return [raw.execute(sql, params).fetchall() for sql, params in statements]
    finally:
        if snapshot and raw.in_transaction:
            raw.execute("COMMIT")


def _write_batch(raw: sqlite3.Connection, statements: Sequence[Statement]) -> list[int]:
    """All statements in one IMMEDIATE transaction, rolled back entirely on any error."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        changes = [max(raw.execute(sql, params).rowcount, 0) for sql, params in statements]
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return changes


class _TransactionLost(Exception):
    """A unit's error ended the whole transaction (SQLite does for a few errors, e.g. SQLITE_FULL, or a
    trigger's RAISE(ROLLBACK)): the units before it are undone too, so the group is re-run one by one."""


def _write_units(
    raw: sqlite3.Connection, units: Sequence[Sequence[Statement] | DatabaseError]
) -> list[list[int] | DatabaseError]:
    """Group commit: ONE IMMEDIATE transaction, a SAVEPOINT per unit, ROLLBACK TO on a unit's own
    failure, one COMMIT. A unit already failed (a limit, checked before) keeps its error untouched."""
    results: list[list[int] | DatabaseError] = []
    raw.execute("BEGIN IMMEDIATE")
    try:
        for unit in units:
            if isinstance(unit, DatabaseError) or not unit:
                results.append(unit if isinstance(unit, DatabaseError) else [])
                continue
            raw.execute("SAVEPOINT unit")
            try:
                changes = [max(raw.execute(sql, params).rowcount, 0) for sql, params in unit]
            except sqlite3.Error as exc:
                error = _error(exc)
                if isinstance(error, TransientError):
                    raise  # not this unit's fault: the whole group rolls back and is retried
                if not raw.in_transaction:
                    raise _TransactionLost from exc
                raw.execute("ROLLBACK TO unit")
                raw.execute("RELEASE unit")
                results.append(error)
            else:
                raw.execute("RELEASE unit")
                results.append(changes)
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return results


def _unit_limits(unit: Sequence[Statement]) -> Sequence[Statement] | DatabaseError:
    try:
        for statement in unit:
            _check_limits(*statement)
    except DatabaseError as exc:
        return exc
    return unit


class SqliteDatabase:
    """`Database` on a local SQLite file. Create with `await SqliteDatabase.open(path)`."""

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection, lock_wait: float,
                 checkpointer: aiosqlite.Connection | None = None):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._lock_wait = lock_wait
        self._checkpointer = checkpointer
        self._checkpointing: asyncio.Task[None] | None = None
        self._written = 0  # statements written since the last checkpoint began

    @classmethod
    async def open(cls, path: str | Path, lock_wait: float = 30.0) -> SqliteDatabase:
        """Open (creating if needed) the file in WAL mode with D1's limits."""
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        writer = cls._connect(file, cache_kib=_WRITER_CACHE_KIB)
        reader: sqlite3.Connection | None = None
        checkpointer: aiosqlite.Connection | None = None
        try:
            _pragma_now(writer, "journal_mode = WAL")
            _pragma_now(writer, "wal_autocheckpoint = 0")
            reader = cls._connect(file, cache_kib=_READER_CACHE_KIB)
            for opened in (writer, reader):  # from now on a locked file is retried by `_retry_locked`
                _pragma_now(opened, "busy_timeout = 0")
            checkpointer = await aiosqlite.connect(
                file, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000, factory=_D1LimitedConnection)
            for pragma in (f"busy_timeout = {_BUSY_TIMEOUT_MS}", "synchronous = NORMAL",
                           f"cache_size = -{_CHECKPOINTER_CACHE_KIB}"):
                await _pragma(checkpointer, pragma)
        except BaseException:
            if checkpointer is not None:
                await checkpointer.close()
            for conn in (writer, reader):
                if conn is not None:
                    conn.close()
            raise
        return cls(file, writer, reader, lock_wait, checkpointer)

    @staticmethod
    def _connect(path: Path, cache_kib: int) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000,
                               factory=_D1LimitedConnection)
        try:
            # cache_size negative: KiB, not pages
            for pragma in (f"busy_timeout = {_BUSY_TIMEOUT_MS}", "foreign_keys = ON", "synchronous = NORMAL",
                           f"cache_size = -{cache_kib}"):
                _pragma_now(conn, pragma)
        except BaseException:
            conn.close()
            raise
        conn.row_factory = _row
        return conn

    async def query(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        return (await self.query_many([Statement(sql, tuple(params))]))[0]

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        for statement in statements:
            _check_limits(*statement)
        return await self._retry_locked(self._reader, _read_snapshot, statements)

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        for statement in statements:
            _check_limits(*statement)
        if not statements:
            return []
        async with self._write_lock:
            changes = await self._retry_locked(self._writer, _write_batch, statements)
        self._wrote(len(statements))
        return changes

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        checked = [_unit_limits(unit) for unit in units]
        if all(isinstance(unit, DatabaseError) or not unit for unit in checked):
            return [unit if isinstance(unit, DatabaseError) else [] for unit in checked]
        async with self._write_lock:
            try:
                results = await self._retry_locked(self._writer, _write_units, checked)
            except _TransactionLost:
                results = None
        if results is None:
            return [await self._alone(unit) for unit in units]
        self._wrote(sum(len(unit) for unit in units))
        return results

    async def _alone(self, unit: Sequence[Statement]) -> list[int] | DatabaseError:
        try:
            return await self.batch(unit)
        except TransientError:
            raise
        except DatabaseError as exc:
            return exc

    async def _retry_locked(
        self,
        conn: sqlite3.Connection,
        operation: Callable[[sqlite3.Connection, A], T],
        statements: A,
    ) -> T:
        """Run `operation` on `conn`, retrying while another process holds the write lock."""
        deadline = time.monotonic() + self._lock_wait
        delay, cap = _LOCK_RETRY_S
        while True:
            try:
                try:
                    return operation(conn, statements)
                except sqlite3.Error as exc:
                    raise _error(exc) from exc
            except TransientError:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, cap)

    def _wrote(self, statements: int) -> None:
        """Hand a checkpoint to the checkpointer's thread every `_CHECKPOINT_EVERY` written statements."""
        self._written += statements
        if self._checkpointer is None or self._checkpointing is not None or self._written < _CHECKPOINT_EVERY:
            return
        self._written = 0
        self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint(self._checkpointer))

    async def _checkpoint(self, conn: aiosqlite.Connection) -> None:
        """Two steps: the bulk of the WAL is copied on the checkpointer's thread while writes go on; the
        few frames written meanwhile are copied with the write lock held, so the checkpoint is complete
        and the next write rewinds the WAL instead of growing it (a PASSIVE checkpoint racing a steady
        flow of writes never completes, and the WAL grew without bound in the test). That second step
        runs on the writer, on the event loop: handed to the checkpointer's thread, the lock was held
        while the thread and then the loop got round to it, 4-7 ms at the median and 20-32 ms at p99
        (worker at 580 events/s, 13 % of the time); on the loop it is held 1.4 ms, p99 5-6 ms (the
        copy and the disk's fsync)."""
        try:
            await _pragma(conn, "wal_checkpoint(PASSIVE)")
            async with self._write_lock:
                _pragma_now(self._writer, "wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # busy or interrupted: the next write past the threshold tries again
        finally:
            self._checkpointing = None

    async def close(self) -> None:
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        if self._checkpointer is not None:
            await self._checkpointer.close()
        self._reader.close()
        self._writer.close()
