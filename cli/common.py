"""What every command shares: the console, the settings (read once, bad ones reported in a line each),
logging, and the database and queue opened through the composition root."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Literal, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
import typer
from redis.exceptions import RedisError
from rich.console import Console

from bootstrap.logging import configure_logging
from bootstrap.resources import Resources, Unavailable, open_resources
from config import ConfigError, Settings, load_settings, unknown_variables
from core.clock import from_ms
from core.redact import redact_url
from gateways.accounts import UndecryptableCredentials
from store import DatabaseError

console = Console()
T = TypeVar("T")


@functools.cache
def settings() -> Settings:
    """The process's settings, read on first use; invalid ones end the command with exit code 2."""
    try:
        loaded = load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"studiovault: {exc}\n")
        raise typer.Exit(2) from None
    configure_logging(loaded.log.log_level, loaded.log.log_json)
    for note in unknown_variables():
        structlog.get_logger("studiovault").warning("unknown_setting", detail=note)
    return loaded


@asynccontextmanager
async def resources(need_redis: bool = True, need_schema: bool = True,
                    purpose: Literal["app", "migrate"] = "app") -> AsyncIterator[Resources]:
    async with open_resources(settings(), need_redis=need_redis, need_schema=need_schema, purpose=purpose) as res:
        yield res


def run(coro: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; what an operator can fix is one line on stderr and exit code 1."""
    config = settings()
    try:
        return asyncio.run(coro())  # type: ignore[arg-type]
    except Unavailable as exc:
        fail(str(exc))
    except DatabaseError as exc:
        fail(f"the database at {redact_url(config.database.database_url)} failed: {type(exc).__name__}: {exc}")
    except (RedisError, OSError) as exc:
        fail(f"Redis at {redact_url(config.queue.redis_url)} failed mid-command ({type(exc).__name__}: {exc}); "
             "try again once it is back.")
    except UndecryptableCredentials as exc:
        fail(f"a gateway account's credentials cannot be read: {exc}. Set SV_ACCOUNTS_ENCRYPTION_KEYS to the "
             "key(s) they were encrypted with.")


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"studiovault: {message}\n")
    raise typer.Exit(1)


# `--tz` on every command that prints times: an IANA zone; default SV_OPERATOR_TIMEZONE (Asia/Kolkata).
TzOption = Annotated[str | None, typer.Option(
    "--tz", help="Print times in this IANA time zone (default: SV_OPERATOR_TIMEZONE, Asia/Kolkata).")]


def zone(tz: str | None) -> ZoneInfo:
    """The operator's time zone: `--tz`, else the setting; a bad name ends the command (exit 2)."""
    name = tz or settings().observability.operator_timezone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        sys.stderr.write(f"studiovault: --tz {name!r}: expected an IANA time zone name, e.g. Asia/Kolkata or UTC\n")
        raise typer.Exit(2) from None


def iso(ms: float | None, tz: ZoneInfo) -> str | None:
    """Epoch milliseconds (as the inbox stores times) → ISO-8601 with the zone's offset, to the second."""
    if ms is None:
        return None
    return from_ms(int(ms)).astimezone(tz).isoformat(timespec="seconds")
