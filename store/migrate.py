"""Apply `migrations/NNNN_name.sql` in numeric order, recording them exactly as wrangler does.

Wrangler keeps applied migrations in `d1_migrations(id, name, applied_at)` with `name` = the file
name (`0001_phase1_schema.sql`). This migrator reads and writes the same table the same way, so a
database migrated by `wrangler d1 migrations apply` is current for it, and the other way round.

Each file runs as ONE batch together with its `d1_migrations` row: a file is applied entirely or not
at all. Two processes migrating at once are safe: the loser's batch fails and it re-reads the state.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from store.errors import DatabaseError, QueryError
from store.port import Database, Statement

# In an installed package (pip install ., the image) the migrations ship inside it as store/migrations;
# in a source checkout they are the repository's migrations/ (the folder wrangler applies).
_CANDIDATES = (Path(__file__).resolve().parent / "migrations", Path(__file__).resolve().parent.parent / "migrations")
MIGRATIONS_DIR = next((path for path in _CANDIDATES if path.is_dir()), _CANDIDATES[-1])
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS d1_migrations(
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
)"""


@dataclass(frozen=True)
class MigrationState:
    applied: list[str]
    pending: list[str]


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migration files in the order they apply; a misnamed `.sql` file is an error, not skipped."""
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no migration files in {directory}: the installation is incomplete")
    bad = [f.name for f in files if not _NAME.match(f.name)]
    if bad:
        raise ValueError(f"migration files must be named NNNN_snake_name.sql: {', '.join(bad)}")
    numbers = [f.name[:4] for f in files]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two migrations share a number in {directory}")
    return files


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (`BEGIN ... END;`) whole."""
    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statement = _strip_comments(current)
            if statement:
                statements.append(statement)
            current = ""
    if _strip_comments(current):
        raise ValueError(f"unterminated statement at end of migration: {current.strip()[:80]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return "\n".join(lines).strip()


async def state(db: Database, directory: Path = MIGRATIONS_DIR) -> MigrationState:
    """Which migration files are applied and which are pending. Reads only (a data statement the D1
    bridge's application token may run): a database without `d1_migrations` has everything pending."""
    try:
        rows = await db.query("SELECT name FROM d1_migrations ORDER BY id")
    except QueryError as exc:
        if "no such table" not in str(exc).lower():
            raise
        rows = []
    applied = [str(row["name"]) for row in rows]
    pending = [f.name for f in migration_files(directory) if f.name not in set(applied)]
    return MigrationState(applied=applied, pending=pending)


async def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the names applied by this call."""
    done: list[str] = []
    await db.batch([Statement(CREATE_MIGRATIONS_TABLE)])
    current = await state(db, directory)
    for name in current.pending:
        statements = [Statement(s) for s in split_statements((directory / name).read_text())]
        statements.append(Statement("INSERT INTO d1_migrations (name) VALUES (?)", (name,)))
        try:
            await db.batch(statements)
        except DatabaseError:
            # Another process may have applied it in the meantime; if so, that is success.
            if name in (await state(db, directory)).applied:
                continue
            raise
        done.append(name)
    return done
