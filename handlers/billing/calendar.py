"""Pure calendar rules of billing: periods in the org's time zone, Indian financial years, and
invoice numbers (GST rule 46). No I/O."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.clock import DEFAULT_TIMEZONE

MAX_INVOICE_NUMBER = 16  # GST rule 46(b): a serial number of at most sixteen characters
DEFAULT_PREFIX = "INV-"
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_NUMBER_CHARS = re.compile(r"^[A-Za-z0-9/-]*$")  # rule 46(b): alphabets, numerals, hyphen, slash


class InvalidPeriod(ValueError):
    """Not a 'YYYY-MM' period."""


class InvoiceNumberError(ValueError):
    """The branch's prefix cannot make a valid GST invoice number."""


def org_timezone(config: dict[str, Any]) -> ZoneInfo:
    """The org's time zone from `config_json.timezone`; Asia/Kolkata when unset or unknown."""
    name = config.get("timezone")
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(DEFAULT_TIMEZONE)


def parse_period(period: str) -> tuple[int, int]:
    match = _PERIOD.match(period)
    if match is None:
        raise InvalidPeriod(f"period {period!r} must look like 2026-10 (YYYY-MM)")
    return int(match.group(1)), int(match.group(2))


def period_bounds(period: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """`[start, end)` of a calendar month in `tz`: local midnights of its 1st and of the next month's."""
    year, month = parse_period(period)
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    start = datetime.combine(date(year, month, 1), time(0), tzinfo=tz)
    end = datetime.combine(date(following[0], following[1], 1), time(0), tzinfo=tz)
    return start, end


def last_closed_period(now: datetime, tz: ZoneInfo) -> str:
    """The most recent calendar month in `tz` that has ended at `now`."""
    local = now.astimezone(tz)
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{month:02d}"


def financial_year(moment: datetime, tz: ZoneInfo) -> str:
    """The Indian financial year (April-March) of `moment` in `tz`, as '2026-27'."""
    local = moment.astimezone(tz)
    first = local.year if local.month >= 4 else local.year - 1
    return f"{first}-{(first + 1) % 100:02d}"


def invoice_number(prefix: str | None, fy: str, seq: int) -> str:
    """`{prefix}{yyYY}/{seq:04d}`, e.g. 'BLR-2627/0001'; at most 16 characters or `InvoiceNumberError`."""
    prefix = DEFAULT_PREFIX if prefix is None else prefix
    if not _NUMBER_CHARS.match(prefix):
        raise InvoiceNumberError(f"invoice prefix {prefix!r} may hold only letters, digits, '-' and '/'")
    number = f"{prefix}{fy[2:4]}{fy[5:7]}/{seq:04d}"
    if len(number) > MAX_INVOICE_NUMBER:
        raise InvoiceNumberError(
            f"invoice number {number!r} is {len(number)} characters; GST rule 46 allows {MAX_INVOICE_NUMBER}"
            f" (shorten the branch's invoice prefix {prefix!r})"
        )
    return number
