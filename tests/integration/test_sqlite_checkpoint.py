"""The SQLite adapter checkpoints its WAL off the write path: the writer's auto-checkpoint (which ran
inside a COMMIT with the write lock held) is off, and a PASSIVE checkpoint on a connection of its own
keeps the WAL from growing while writes flow."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from store import Statement
from store.sqlite import SqliteDatabase

ROW = "x" * 2000  # every insert dirties a page of its own


async def _write(db: SqliteDatabase, batches: int, *, grouped: bool) -> None:
    for i in range(batches):
        unit = [Statement("INSERT INTO t(n, body) VALUES (?, ?)", (i, ROW))]
        if grouped:
            assert await db.batches([unit, unit]) == [[1], [1]]
        else:
            assert await db.batch(unit) == [1]
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the background checkpoint start


async def test_writes_leave_a_bounded_wal_and_every_row_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    db = await SqliteDatabase.open(path)
    await db.batch([Statement("CREATE TABLE t(n INTEGER, body TEXT)")])
    await _write(db, 2500, grouped=False)  # ~5 MB of rows: without checkpoints the WAL holds them all
    await _write(db, 1250, grouped=True)
    wal = path.with_name(path.name + "-wal")
    size = wal.stat().st_size  # before closing: the last connection's close checkpoints everything anyway
    await db.close()

    # The file keeps its largest extent (it is rewound, not truncated). Measured with checkpoints:
    # 4.4-6.2 MB on an idle machine and 5.0-7.4 MB with both cores busy (this loop writes on the event
    # loop and yields every 50 writes, so the checkpoint's steps wait that long; 1.7-2.1 MB when writes
    # went to a thread); with none 36 MB. The bound sits between, far from both.
    assert size < 12_000_000, f"the WAL grew to {size} bytes: nothing checkpointed it"
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT count(*) FROM t").fetchone() == (5000,)
    finally:
        raw.close()


async def test_the_writer_never_checkpoints_inside_its_commit(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "wal.db")
    try:
        writer = sqlite3.connect(tmp_path / "wal.db")  # what a pragma on a fresh connection reports: the default
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
        writer.close()
        assert db._writer.execute("PRAGMA wal_autocheckpoint").fetchall() == [{"wal_autocheckpoint": 0}]
    finally:
        await db.close()
