"""Lenient readers for values that come from outside: a JSON object column, a `Retry-After` header."""

from __future__ import annotations

import json


def json_object(value: object) -> dict[str, object]:
    """A JSON object stored as text (a `*_json` column); {} when empty, not JSON, or not an object."""
    try:
        parsed = json.loads(str(value)) if value else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def retry_after_seconds(header: str | None) -> float | None:
    """`Retry-After` in seconds: the delta-seconds form only (an HTTP date is ignored); None otherwise."""
    try:
        seconds = float((header or "").strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
