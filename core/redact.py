"""What may appear in logs and operator output about a URL: scheme, host and path, never credentials."""

from __future__ import annotations


def redact_url(url: str) -> str:
    """`redis://:secret@host:6379/0?x=1` → `redis://host:6379/0`; `sqlite:///path/x.db` stays as it is."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.partition("?")[0]
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{path.partition('?')[0].partition('#')[0]}"
