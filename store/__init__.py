"""The `Database` port, its adapters (local SQLite file, D1 through the bridge Worker) and the migrator."""

from store.errors import (
    AlreadyApplied,
    ConstraintViolation,
    DatabaseError,
    DatabaseUnavailable,
    ParameterLimitExceeded,
    QueryError,
    TransientError,
    VersionConflict,
)
from store.port import (
    MAX_PARAMS,
    Database,
    SqlValue,
    Statement,
    as_check,
    expect_rows,
    expect_version,
    query_in,
)

__all__ = [
    "MAX_PARAMS",
    "AlreadyApplied",
    "ConstraintViolation",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "ParameterLimitExceeded",
    "QueryError",
    "SqlValue",
    "Statement",
    "TransientError",
    "VersionConflict",
    "as_check",
    "expect_rows",
    "expect_version",
    "query_in",
]
