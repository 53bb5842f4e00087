"""An operator's mistakes and outages get a line or two and a non-zero exit within seconds, never a hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from store.sqlite import SqliteDatabase
from tests.support.processes import cli, pipeline_env
from tests.support.redis_server import free_port

pytestmark = pytest.mark.slow


def timed(env: dict[str, str], *args: str) -> tuple[float, int, str, str]:
    started = time.monotonic()
    done = cli(env, *args)
    return time.monotonic() - started, done.returncode, done.stdout, done.stderr


def test_status_with_redis_unreachable_exits_non_zero_within_seconds(sqlite_db: SqliteDatabase) -> None:
    env = pipeline_env(f"sqlite:///{sqlite_db.path}", f"redis://127.0.0.1:{free_port()}/0")
    seconds, code, _, err = timed(env, "status")
    assert code == 1
    assert seconds < 10
    lines = err.strip().splitlines()
    assert len(lines) <= 2, err
    assert "Redis at redis://127.0.0.1:" in err
    assert "is unreachable" in err
    assert "Traceback" not in err


def test_commands_on_an_unmigrated_database_say_to_migrate(tmp_path: Path, redis_url: str) -> None:
    env = pipeline_env(f"sqlite:///{tmp_path / 'fresh.db'}", redis_url)
    for command in (["status"], ["dead", "list"], ["redrive"]):
        seconds, code, _, err = timed(env, *command)
        assert code == 1, command
        assert "pending migration(s)" in err
        assert "run `studiovault migrate`" in err
        assert seconds < 10
    _, code, out, _ = timed(env, "migrate")
    assert code == 0
    _, code, out, _ = timed(env, "status", "--json")
    assert code == 0, out


def test_a_bad_setting_is_one_line_naming_the_variable_and_exits_2(sqlite_db: SqliteDatabase, redis_url: str) -> None:
    env = pipeline_env(f"sqlite:///{sqlite_db.path}", redis_url, SV_LOG_LEVEL="LOUD", SV_R2_BUCKETS="media")
    for command in (["status"], ["worker"], ["ingress"]):
        seconds, code, _, err = timed(env, *command)
        assert code == 2, command
        assert "SV_LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in err
        assert "SV_R2_BUCKETS='media': expected a JSON list" in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 3  # the header and one line per variable
        assert seconds < 10


def test_help_works_everywhere_even_with_bad_settings(redis_url: str, tmp_path: Path) -> None:
    env = pipeline_env(f"sqlite:///{tmp_path / 'x.db'}", redis_url, SV_MAX_JOBS="lots")
    for command in ([], ["status"], ["dead"], ["dead", "replay"], ["billing", "close"], ["worker"], ["ingress"],
                    ["migrate"], ["redrive"], ["storage"]):
        done = cli(env, *command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert "Usage" in done.stdout
