"""Typed database errors, shared by every adapter.

Both engines (a SQLite file through sqlite3, D1 through the bridge Worker) report failures as text; one
classifier turns that text into the same exception types, so callers never match on messages.

- `VersionConflict`, `TransientError` (and its `DatabaseUnavailable`): retry the unit of work.
- `AlreadyApplied`: the inbox guard fired; the event's effect is already committed.
- `ConstraintViolation`, `ParameterLimitExceeded`, `QueryError`: permanent; retrying cannot help.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of every error a `Database` adapter raises."""

    retryable: bool = False


class VersionConflict(DatabaseError):
    """An expected row version was not current: the batch was rolled back, nothing was written."""

    retryable = True


class AlreadyApplied(DatabaseError):
    """The batch's inbox guard found the event already applied: the batch was rolled back."""


class TransientError(DatabaseError):
    """A failure Cloudflare (or SQLite) names retry-safe: the batch did not commit."""

    retryable = True


class DatabaseUnavailable(TransientError):
    """The database could not be reached at all (connection refused, its front door answered 5xx or
    429): retried like any transient error, told apart so operators can alert on an outage."""


class ConstraintViolation(DatabaseError):
    """UNIQUE, FOREIGN KEY, NOT NULL, CHECK or an append-only trigger rejected the batch."""


class ParameterLimitExceeded(DatabaseError):
    """A statement bound more parameters than D1 allows (100); chunk it (see `store.query_in`)."""


class QueryError(DatabaseError):
    """Any other SQL error (syntax, unknown table or column, statement too long)."""


# Cloudflare's list of retry-safe D1 errors, plus SQLite's own busy/locked states.
_TRANSIENT_MARKERS = (
    "network connection lost",
    "storage caused object to be reset",
    "caused object to be reset",
    "reset because its code was updated",
    "transient issue on remote node",
    "overloaded",
    "database is locked",
    "database is busy",
    "database table is locked",
    "sqlite_busy",
)
_CONSTRAINT_MARKERS = ("constraint failed", "sqlite_constraint", "append_only", "foreign key mismatch")
_PARAM_MARKERS = ("too many sql variables", "too many api variables", "too many bound")


def classify(message: str) -> DatabaseError:
    """Map an engine's error text to the typed error callers handle."""
    text = message.lower()
    if "version_conflict" in text:
        return VersionConflict(message)
    if "already_applied" in text:
        return AlreadyApplied(message)
    if any(marker in text for marker in _TRANSIENT_MARKERS):
        return TransientError(message)
    if any(marker in text for marker in _PARAM_MARKERS):
        return ParameterLimitExceeded(message)
    if any(marker in text for marker in _CONSTRAINT_MARKERS):
        return ConstraintViolation(message)
    return QueryError(message)
