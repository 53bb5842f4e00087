"""The long-running processes' memory tuning, observed in real processes: glibc's malloc arenas (one,
shared by every thread), the SQLite page caches, and `cryptography` loaded only where a secret is opened."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import Statement
from store.migrate import migrate
from store.sqlite import SqliteDatabase
from tests.support.pipeline import TEST_ENCRYPTION_KEY
from tests.support.processes import pipeline_env, worker_process

ROOT = Path(__file__).resolve().parents[2]
HEAP_MAX = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: a thread arena's heap is one such aligned mapping
glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc malloc only"
)

# Threads that malloc (SQLite on connections of their own, as aiosqlite's threads do), then report.
THREADS = """
import sqlite3, sys, threading
from bootstrap.process import one_malloc_arena
if sys.argv[1] == "tuned":
    assert one_malloc_arena()
def work():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t(x)")
    db.executemany("INSERT INTO t VALUES (?)", ((str(i) * 50,) for i in range(20_000)))
    db.execute("SELECT count(*) FROM t").fetchall()
    done.wait()
done = threading.Event()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
import time; time.sleep(1.0)
print(open("/proc/self/maps").read())
done.set()
for t in threads: t.join()
"""


def thread_heaps(maps: str) -> int:
    """glibc's per-thread arena heaps: a 64 MiB-aligned read-write anonymous mapping, the rest of its
    64 MiB reserved (---p) right after it."""
    rows = []
    for line in filter(None, maps.splitlines()):
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        rows.append((start, end, fields[1], len(fields) > 5))
    count = 0
    for (start, end, perms, named), nxt in zip(rows, [*rows[1:], None], strict=True):
        if perms != "rw-p" or named or start % HEAP_MAX:
            continue
        reserved_end = nxt[1] if nxt and nxt[0] == end and nxt[2] == "---p" and not nxt[3] else end
        count += reserved_end - start == HEAP_MAX
    return count


def _maps_of(mode: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", THREADS, mode], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout


@glibc_only
def test_after_one_malloc_arena_threads_allocate_from_the_main_arena() -> None:
    assert thread_heaps(_maps_of("default")) >= 1  # the control: glibc gives each thread an arena
    assert thread_heaps(_maps_of("tuned")) == 0


def _heaps_once_started(pid: int) -> int:
    """Thread heaps of process `pid` once its threads run: the main one and the SQLite checkpointer's
    (aiosqlite), at least; each mallocs as it starts, which gives it an arena of its own by default."""
    deadline = time.monotonic() + 30
    status = ""
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        if int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:"))) >= 2:
            time.sleep(0.5)  # its start-up (connections, the re-drive) runs on those threads
            return thread_heaps(Path(f"/proc/{pid}/maps").read_text())
        time.sleep(0.1)
    pytest.fail(f"the worker did not start its threads: {status}")


@glibc_only
@pytest.mark.slow
async def test_a_worker_process_runs_its_sqlite_threads_on_one_arena(redis_url: str, tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "sv.db")
    try:
        await migrate(db)
    finally:
        await db.close()
    env = pipeline_env(f"sqlite:///{tmp_path / 'sv.db'}", redis_url, SV_QUEUE_NAME="test:arena")
    with worker_process(env, tmp_path / "worker.log") as worker:
        assert await asyncio.to_thread(_heaps_once_started, worker.pid) == 0


async def test_the_page_caches_are_capped_and_reads_past_them_are_whole(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "cache.db")
    try:
        assert db._writer.execute("PRAGMA cache_size").fetchall() == [{"cache_size": -1024}]
        assert db._reader.execute("PRAGMA cache_size").fetchall() == [{"cache_size": -256}]
        assert db._checkpointer is not None
        assert await db._checkpointer.execute_fetchall("PRAGMA cache_size") == [(-64,)]
        await db.batch([Statement("CREATE TABLE t(n INTEGER PRIMARY KEY, body TEXT)")])
        body = "x" * 1000
        for start in range(0, 2000, 50):  # ~2 MB: 8 times the reader's cache
            await db.batch([Statement("INSERT INTO t(n, body) VALUES (?, ?)", (n, body))
                            for n in range(start, start + 50)])
        rows = await db.query("SELECT count(*) AS n, sum(length(body)) AS size FROM t")
        assert rows == [{"n": 2000, "size": 2_000_000}]
        snapshot = await db.query_many([Statement("SELECT n FROM t ORDER BY n", ()),
                                        Statement("SELECT max(n) AS top FROM t", ())])
        assert [r["n"] for r in snapshot[0]] == list(range(2000))
        assert snapshot[1] == [{"top": 1999}]
    finally:
        await db.close()


def _mapped_once_polling(pid: int, heartbeat: Path) -> str:
    """Process `pid`'s memory map once it has polled Redis (its heartbeat file exists): start-up is over."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if heartbeat.exists():
            return Path(f"/proc/{pid}/maps").read_text()
        time.sleep(0.1)
    pytest.fail("the worker never polled Redis")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/PID/maps")
async def test_a_worker_with_encryption_keys_does_not_load_cryptography_until_a_secret_is_opened(
        redis_url: str, tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "sv.db")
    try:
        await migrate(db)
    finally:
        await db.close()
    env = pipeline_env(f"sqlite:///{tmp_path / 'sv.db'}", redis_url, SV_QUEUE_NAME="test:crypto",
                       SV_ACCOUNTS_ENCRYPTION_KEYS=f'["{TEST_ENCRYPTION_KEY}"]',
                       SV_HEARTBEAT_FILE=str(tmp_path / "heartbeat"))
    with worker_process(env, tmp_path / "worker.log") as worker:
        maps = await asyncio.to_thread(_mapped_once_polling, worker.pid, tmp_path / "heartbeat")
    assert "/cryptography/" not in maps  # its Rust extension (with OpenSSL inside) is 6-7 MB resident
    assert "/pydantic_core/" in maps  # the control: the map lists the extensions that were loaded


SEAL_AND_OPEN = """
import sys
from gateways.secretbox import FernetBox
box = FernetBox([sys.argv[1]])
assert "cryptography" not in sys.modules, "made a box"
token = box.encrypt(b"rzp_secret")
assert "cryptography.fernet" in sys.modules
assert box.decrypt(token) == b"rzp_secret"
try:
    FernetBox(["not-a-key"])
except ValueError as exc:
    print(exc)
"""


def test_the_box_loads_cryptography_on_first_use_and_rejects_a_bad_key_at_once() -> None:
    done = subprocess.run([sys.executable, "-c", SEAL_AND_OPEN, TEST_ENCRYPTION_KEY], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Fernet key must be 32 url-safe base64-encoded bytes."
