"""The inbox as an operator sees it: status counts, the oldest pending event, dead letters, and the
bounded, index-only reads behind the pipeline-state gauges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.clock import epoch_ms
from store import Database, SqlValue, Statement


@dataclass(frozen=True)
class PipelineStatus:
    queue_depth: int
    inbox: dict[str, int]
    oldest_pending_age_s: float | None
    dead: int
    oldest_pending_created_at: int | None = None  # ms


async def pipeline_status(db: Database, queue_depth: int, now: datetime | None = None) -> PipelineStatus:
    now = now or datetime.now(UTC)
    counts, oldest = await db.query_many([
        Statement("SELECT status, count(*) AS n FROM event_inbox GROUP BY status"),
        Statement("SELECT min(created_at) AS created_at FROM event_inbox WHERE status = 'pending'"),
    ])
    by_status = {str(r["status"]): int(r["n"]) for r in counts}
    created = int(oldest[0]["created_at"]) if oldest and oldest[0]["created_at"] is not None else None
    age = (epoch_ms(now) - created) / 1000 if created is not None else None
    return PipelineStatus(queue_depth, by_status, age, by_status.get("dead", 0), created)


async def feed_waiting(db: Database, cursor: int | None) -> int:
    """Feed rows (outbox events) after the feed poller's cursor: written, not yet enqueued by the poller."""
    rows = await db.query("SELECT count(*) AS n FROM inbox_feed WHERE seq > ?", (-1 if cursor is None else cursor,))
    return int(rows[0]["n"])


# ---- the pipeline-state gauges: bounded cost whatever the inbox holds ------------------------------

# Counts stop here: enough to alert on, and a backlog of millions costs no more than this to count.
COUNT_CAP = 10_000
# Each is answered from the index on (status, available_at) alone (migration 0003; no new index is
# needed): a capped range scan for the counts, one index seek for the most overdue pending event
# (asserted with EXPLAIN QUERY PLAN in the tests).
ALERT_QUERIES = (
    "SELECT count(*) AS n FROM (SELECT 1 FROM event_inbox WHERE status = 'pending' LIMIT ?)",
    "SELECT count(*) AS n FROM (SELECT 1 FROM event_inbox WHERE status = 'dead' LIMIT ?)",
    "SELECT available_at AS due FROM event_inbox WHERE status = 'pending' ORDER BY available_at LIMIT 1",
)


@dataclass(frozen=True)
class AlertState:
    pending: int
    dead: int
    oldest_due_age_s: float  # now - the smallest available_at among pending events; 0 when none is due yet


async def alert_state(db: Database, now: datetime, cap: int = COUNT_CAP) -> AlertState:
    """Pending and dead counts (each capped at `cap`) and how long the most overdue pending event has
    been due. Due, not created: a notification deferred through quiet hours is not late until they end,
    and a retry is due again at its backoff's end (its failures show in the retry counters)."""
    pending, dead, oldest = await db.query_many([
        Statement(ALERT_QUERIES[0], (cap,)), Statement(ALERT_QUERIES[1], (cap,)), Statement(ALERT_QUERIES[2]),
    ])
    due = oldest[0]["due"] if oldest else None
    age = max(epoch_ms(now) - int(due), 0) / 1000 if due is not None else 0.0
    return AlertState(int(pending[0]["n"]), int(dead[0]["n"]), age)


# ---- dead letters ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeadFilter:
    """Which dead letters: `type` exactly (or a prefix, ending in `*`: `payment.*`), and `reason` a
    substring of the recorded error (case-sensitive: `unknown_project`, `VersionConflict`)."""

    type: str | None = None
    reason: str | None = None

    def where(self) -> tuple[str, tuple[SqlValue, ...]]:
        clauses: list[str] = ["status = 'dead'"]
        params: list[SqlValue] = []
        if self.type:
            if self.type.endswith("*"):
                prefix = self.type.removesuffix("*")
                clauses.append("substr(type, 1, ?) = ?")
                params += [len(prefix), prefix]
            else:
                clauses.append("type = ?")
                params.append(self.type)
        if self.reason:
            clauses.append("instr(last_error, ?) > 0")
            params.append(self.reason)
        return " AND ".join(clauses), tuple(params)

    @property
    def active(self) -> bool:
        return bool(self.type or self.reason)

    def describe(self) -> str:
        parts = [f"type {self.type}" if self.type else "", f"reason containing {self.reason!r}" if self.reason else ""]
        return " and ".join(p for p in parts if p)


async def count_dead(db: Database, which: DeadFilter | None = None) -> int:
    where, params = (which or DeadFilter()).where()
    rows = await db.query(f"SELECT count(*) AS n FROM event_inbox WHERE {where}", params)
    return int(rows[0]["n"])


async def list_dead(db: Database, limit: int = 50, which: DeadFilter | None = None) -> list[dict[str, Any]]:
    """The newest `limit` dead letters matching `which`, with their correlation id."""
    where, params = (which or DeadFilter()).where()
    return await db.query(
        "SELECT id, type, org_id, branch_id, attempts, last_error, created_at, dead_at,"
        " json_extract(payload_json, '$.correlation_id') AS correlation_id"
        f" FROM event_inbox WHERE {where} ORDER BY dead_at DESC, id DESC LIMIT ?",
        (*params, limit),
    )


async def dead_ids(db: Database, which: DeadFilter | None = None) -> list[str]:
    """Every dead letter matching `which`, oldest death first."""
    where, params = (which or DeadFilter()).where()
    rows = await db.query(f"SELECT id FROM event_inbox WHERE {where} ORDER BY dead_at, id", params)
    return [str(r["id"]) for r in rows]
