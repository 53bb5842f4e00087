"""Time as the database stores it (integer milliseconds since the epoch) and the default time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Studios are India-first: where an org or branch names no time zone, this one applies.
DEFAULT_TIMEZONE = "Asia/Kolkata"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Exact milliseconds since the epoch (integer arithmetic: no float rounding)."""
    return (moment - EPOCH) // _MS


def from_ms(value: int) -> datetime:
    """Epoch milliseconds → an aware UTC datetime."""
    return EPOCH + value * _MS


def utc_now() -> datetime:
    return datetime.now(UTC)
