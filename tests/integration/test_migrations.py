"""The migrated schema equals the seed, parsed from the seed's own text (not from our migration)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from store import Database
from store.migrate import MIGRATIONS_DIR, migrate, migration_files, split_statements, state

SEED = Path(__file__).parents[1] / "data" / "seed_schema.txt"
SHARED_SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_4d7d9fb71d2b250d.txt"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    default: str | None
    primary_key: bool
    unique: bool
    references: tuple[str, str] | None


def parse_seed(text: str) -> tuple[dict[str, list[Column]], dict[str, set[tuple[str, ...]]]]:
    """Tables and indexes from the seed's markdown: `### name`, `- col TYPE ...`, `- (a, b)`."""
    tables: dict[str, list[Column]] = {}
    indexes: dict[str, set[tuple[str, ...]]] = {}
    table = None
    for raw in text.splitlines():
        line = raw.split("--")[0].strip()
        if raw.startswith("### "):
            table = raw[4:].strip()
            tables[table], indexes[table] = [], set()
        elif table and line.startswith("- ("):
            indexes[table].add(tuple(c.strip() for c in line[3:].rstrip(")").split(",")))
        elif table and line.startswith("- "):
            name, col_type, *rest = line[2:].split()
            flags = " ".join(rest)
            default = re.search(r"DEFAULT (\S+)", flags)
            ref = re.search(r"REFERENCES (\w+)\((\w+)\)", flags)
            tables[table].append(Column(
                name, col_type, "NOT NULL" in flags, default.group(1) if default else None,
                "PRIMARY KEY" in flags, "UNIQUE" in flags, (ref.group(1), ref.group(2)) if ref else None,
            ))
        elif raw.startswith("## "):
            table = None  # a new section (enforcement notes, phase 2): no more columns
    return tables, indexes


async def live_schema(db: Database, table: str) -> tuple[list[Column], set[tuple[str, ...]]]:
    info, fks, index_list = await db.query_many([
        _pragma("table_info", table), _pragma("foreign_key_list", table), _pragma("index_list", table)
    ])
    refs = {fk["from"]: (fk["table"], fk["to"]) for fk in fks}
    unique_cols: set[str] = set()
    indexed: set[tuple[str, ...]] = set()
    for index in index_list:
        cols = tuple(r["name"] for r in await db.query(f'PRAGMA index_info("{index["name"]}")'))
        if index["origin"] == "u":
            unique_cols.update(cols)
        elif index["origin"] == "c":
            indexed.add(cols)
    columns = [
        Column(c["name"], c["type"], bool(c["notnull"]), c["dflt_value"], bool(c["pk"]), c["name"] in unique_cols,
               refs.get(c["name"]))
        for c in info
    ]
    return columns, indexed


def _pragma(name: str, table: str):  # type: ignore[no-untyped-def]
    from store import Statement  # noqa: PLC0415

    return Statement(f'PRAGMA {name}("{table}")')


# sha256 of the seed as copied into tests/data (from shared/seed/000_4d7d9fb71d2b250d.txt).
SEED_SHA256 = "c9f9368989f2d295d37a2df7ce801a98b9e35989c165c2909b1d784edc28c68d"


def test_the_seed_copy_is_the_authoritative_seed() -> None:
    """The copy is unchanged since it was taken, and equals shared/seed wherever that is beside us."""
    assert hashlib.sha256(SEED.read_bytes()).hexdigest() == SEED_SHA256
    if SHARED_SEED.exists():
        assert SEED.read_bytes() == SHARED_SEED.read_bytes()


def test_seed_parser_reads_all_thirteen_tables() -> None:
    tables, indexes = parse_seed(SEED.read_text())
    assert len(tables) == 13
    assert tables["branches"][1] == Column("org_id", "TEXT", True, None, False, False, ("organizations", "id"))
    assert indexes["projects"] == {("branch_id", "status"), ("branch_id", "start_date"), ("client_id",)}


async def test_migrated_schema_matches_the_seed_column_for_column_and_index_for_index(schema_db: Database) -> None:
    tables, indexes = parse_seed(SEED.read_text())
    for table, expected_columns in tables.items():
        columns, indexed = await live_schema(schema_db, table)
        assert columns == expected_columns, table
        assert indexed == indexes[table], table


async def test_migrating_again_changes_nothing(schema_db: Database) -> None:
    objects = "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name"
    before = await schema_db.query(objects)
    assert await migrate(schema_db) == []
    after = await schema_db.query(objects)
    assert after == before


async def test_applied_migrations_are_recorded_as_wrangler_records_them(db: Database) -> None:
    rows = await db.query("SELECT id, name, applied_at FROM d1_migrations ORDER BY id")
    assert [r["name"] for r in rows] == [f.name for f in migration_files()]
    assert all(r["name"].endswith(".sql") and r["applied_at"] for r in rows)
    assert (await state(db)).pending == []


async def test_a_database_with_wranglers_record_is_current(schema_db: Database) -> None:
    """A migration recorded by wrangler (same table, same name) is not applied a second time."""
    current = await state(schema_db)
    assert current.applied == [f.name for f in migration_files()]
    assert await migrate(schema_db) == []


def test_split_keeps_trigger_bodies_whole() -> None:
    statements = split_statements((MIGRATIONS_DIR / "0002_guards.sql").read_text())
    triggers = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 6
    assert all(s.rstrip().endswith("END;") for s in triggers)


def test_misnamed_migration_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"NNNN_snake_name\.sql"):
        migration_files(tmp_path)
