"""Cloudflare D1 through the bridge Worker (`d1-bridge/`): the production `Database` adapter.

Every call is one HTTP request to the Worker, which runs it on the bound D1 database:
`query` -> `POST /query`, `query_many` and `batch` -> `POST /batch` (one D1 transaction), `batches`
-> `POST /batches` (group commit: each unit its own D1 batch, per-unit results or errors). D1's
error text comes back verbatim and goes through `store.errors.classify`, so this adapter raises
the same types as the SQLite one. D1's per-statement limits are checked here, before sending.

Retries, bounded and with jittered exponential backoff, happen only when nothing can have been
committed twice by mistake: errors Cloudflare names retry-safe (`TransientError`), and failures to
connect. A timeout or a dropped connection AFTER the request was sent is ambiguous for a write batch
(D1 may have committed it): it is raised as `TransientError` without a retry here, and the job
re-runs its whole unit of work, whose guards (the inbox `already_applied` assertion, `expect_version`
checks) make a replay of a committed batch abort and write nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from store.errors import (
    DatabaseError,
    DatabaseUnavailable,
    ParameterLimitExceeded,
    QueryError,
    TransientError,
    classify,
)
from store.port import MAX_PARAMS, MAX_SQL_BYTES, Row, SqlValue, Statement

CONNECT_TIMEOUT = 5.0
# D1 allows a request 30 s; waiting longer for one attempt cannot help.
REQUEST_TIMEOUT = 30.0
MAX_ATTEMPTS = 4
# The bridge refuses more statements than this in one batch.
MAX_BATCH_STATEMENTS = 1000
# JSON numbers pass through JavaScript doubles in the Worker: larger integers would change silently.
MAX_SAFE_INTEGER = 2**53 - 1

# Failures before the request could reach the bridge: nothing can have been committed, retry here.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after it may have been sent: D1 may have committed. Not retried here; the caller gets a
# TransientError and the job re-runs the whole unit of work, whose guards make a replay harmless.
_MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, TimeoutError)
_jitter = random.SystemRandom()


class BridgeAuthError(QueryError):
    """The bridge Worker answered 401: the token (SV_D1_BRIDGE_TOKEN or SV_D1_MIGRATION_TOKEN) is not one of
    its BRIDGE_TOKEN / MIGRATION_TOKEN secrets."""


class BridgeForbidden(QueryError):
    """The bridge Worker answered 403: the application token may run data statements only (no DDL, PRAGMA,
    `sqlite_*` tables, d1_migrations writes); schema changes need the migration token."""


def _check_limits(sql: str, params: Sequence[SqlValue]) -> None:
    if len(params) > MAX_PARAMS:
        raise ParameterLimitExceeded(
            f"{len(params)} bound parameters in one statement; D1 allows {MAX_PARAMS} "
            "(chunk IN lists with store.query_in)"
        )
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise QueryError(f"statement is {len(sql.encode())} bytes; D1 allows {MAX_SQL_BYTES}")


def _value(value: SqlValue) -> SqlValue:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
        raise QueryError(f"integer {value} is outside ±2**53-1 and would lose precision on its way to D1")
    return value


def _payload(statements: Sequence[Statement]) -> list[dict[str, Any]]:
    if len(statements) > MAX_BATCH_STATEMENTS:
        raise QueryError(
            f"{len(statements)} statements in one batch; the bridge allows {MAX_BATCH_STATEMENTS}"
        )
    out = []
    for sql, params in statements:
        _check_limits(sql, params)
        out.append({"sql": sql, "params": [_value(v) for v in params]})
    return out


def _unit_result(answer: Any, statements: int) -> list[int] | DatabaseError:
    """One unit's slot of a /batches answer: its changes, or its error classified like a 500's."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return classify(str(answer["error"].get("message", "")))
    rows = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(rows, list) or len(rows) != statements:
        raise QueryError(f"D1 bridge /batches answered {str(answer)[:200]} for a unit of {statements} statements")
    return [int(result["changes"]) for result in rows]


class D1BridgeDatabase:
    """`Database` on Cloudflare D1 through the bridge Worker at `url` (`https://...`, or `d1+https://...`).

    `requests` counts the HTTP requests made, retries included (the benchmarks report it per event).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        setting: str = "D1_BRIDGE_TOKEN",
    ) -> None:
        if not token:
            raise ValueError(f"the D1 bridge needs a token (SV_{setting})")
        self._setting = setting
        self.url = url.removeprefix("d1+").rstrip("/")
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"D1 bridge URL must be https://host (or http:// locally), got {url!r}")
        self.requests = 0
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0),
            transport=transport,
        )

    def __repr__(self) -> str:  # never show the token
        return f"D1BridgeDatabase({self.url!r}, requests={self.requests})"

    async def query(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        (statement,) = _payload([Statement(sql, tuple(params))])
        body = await self._post("/query", statement)
        rows = body.get("rows")
        if not isinstance(rows, list):
            raise QueryError(f"D1 bridge /query answered without rows: {str(body)[:200]}")
        return rows

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        """Several reads in ONE request (one D1 batch, so one consistent snapshot)."""
        if not statements:
            return []
        return [result["rows"] for result in await self._batch(statements)]

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        if not statements:
            return []
        return [int(result["changes"]) for result in await self._batch(statements)]

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        """Every non-empty unit in ONE request; a unit failing the limits here is not sent."""
        results: list[list[int] | DatabaseError] = []
        payload: list[dict[str, Any]] = []
        sent: list[int] = []  # the slot of each unit sent
        for unit in units:
            try:
                statements = _payload(unit)
            except DatabaseError as exc:
                results.append(exc)
                continue
            results.append([])
            if statements:
                sent.append(len(results) - 1)
                payload.append({"statements": statements})
        if not payload:
            return results
        answers = (await self._post("/batches", {"units": payload})).get("results")
        if not isinstance(answers, list) or len(answers) != len(payload):
            raise QueryError(f"D1 bridge /batches answered {str(answers)[:200]} for {len(payload)} units")
        for slot, body, answer in zip(sent, payload, answers, strict=True):
            results[slot] = _unit_result(answer, len(body["statements"]))
        return results

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _batch(self, statements: Sequence[Statement]) -> list[dict[str, Any]]:
        body = await self._post("/batch", {"statements": _payload(statements)})
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(statements):
            raise QueryError(f"D1 bridge /batch answered {str(body)[:200]} for {len(statements)} statements")
        return results

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            content = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        except ValueError as exc:  # NaN / infinity: D1 cannot store them
            raise QueryError(f"cannot send to D1: {exc}") from exc
        last: DatabaseError = TransientError(f"D1 bridge {path}: no attempt made")
        for attempt in range(self._max_attempts):
            if attempt:
                await asyncio.sleep(self._delay(attempt))
            self.requests += 1
            try:
                # httpx's timeouts are per phase; this bounds the whole request like D1 does.
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    response = await self._client.post(path, content=content)
            except _NOT_SENT as exc:
                last = DatabaseUnavailable(f"D1 bridge {path}: {type(exc).__name__}: {exc or 'no connection'}")
                continue
            except _MAYBE_SENT as exc:
                raise TransientError(
                    f"D1 bridge {path}: {type(exc).__name__} after sending; it may have committed: {exc}"
                ) from exc
            if response.status_code < 300:
                return self._json(response)
            error = self._error(response, self._setting)
            # Only D1's own retry-safe errors (classified from a 500's message) are retried here.
            if not (response.status_code == 500 and isinstance(error, TransientError)):
                raise error
            last = error
        kind = DatabaseUnavailable if isinstance(last, DatabaseUnavailable) else TransientError
        raise kind(f"gave up after {self._max_attempts} attempts: {last}") from last

    def _delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_backoff, backoff * 2**attempt)]."""
        return _jitter.uniform(0, min(self._max_backoff, self._backoff * 2**attempt))

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise QueryError(
                f"D1 bridge answered {response.status_code} with non-JSON: {response.text[:200]!r}"
            ) from exc
        if not isinstance(body, dict):
            raise QueryError(f"D1 bridge answered {response.status_code} with {str(body)[:200]}")
        return body

    @classmethod
    def _error(cls, response: httpx.Response, setting: str = "D1_BRIDGE_TOKEN") -> DatabaseError:
        """The typed error a non-2xx answer means."""
        status = response.status_code
        if status == 401:
            secret = "MIGRATION_TOKEN" if setting == "D1_MIGRATION_TOKEN" else "BRIDGE_TOKEN"
            return BridgeAuthError(
                f"the D1 bridge rejected the bearer token (HTTP 401): SV_{setting} must be one of the Worker's "
                f"{secret} values (`npx wrangler secret put {secret}`)"
            )
        if status == 403:
            return BridgeForbidden(
                "the D1 bridge refused a statement for this token (HTTP 403): the application token "
                "(SV_D1_BRIDGE_TOKEN) runs data statements only; schema changes need SV_D1_MIGRATION_TOKEN "
                "(`studiovault migrate`)"
            )
        try:
            message = str(cls._json(response)["error"]["message"])
        except (QueryError, KeyError, TypeError):
            message = ""
        if status == 500 and message:
            return classify(message)  # D1's own text, verbatim
        if (status == 429 or status >= 500) and not message:
            # Cloudflare's edge answered (rate limited, Worker unavailable, origin timeout): nothing
            # says the batch did not commit, so this is not retried here; the job retries the unit
            # of work, whose guards make a replay harmless.
            return DatabaseUnavailable(f"D1 bridge unavailable: HTTP {status} {response.text[:200]!r}")
        if status in (404, 405):
            return QueryError(
                f"HTTP {status} from {response.request.url}: is DATABASE_URL the D1 bridge Worker?"
            )
        return QueryError(f"D1 bridge HTTP {status}: {message or repr(response.text[:200])}")
