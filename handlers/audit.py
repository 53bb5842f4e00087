"""Audit rows, written by the pipeline's own actor in each org (`audit_logs.actor_user_id` must name a
`users` row).

Each org gets one system user, `usr_<uuidv7>`, derived from the org id alone (same org → same id, on
every worker, with no read): the 48-bit timestamp of the org's own id, and the rest of the bits from a
SHA-256 of it, with the version-7 and RFC 4122 variant bits set. `ensure_system_user` is an
`INSERT ... ON CONFLICT DO NOTHING`, so any batch that writes an audit row can include it first;
`audit_row` does both.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from store import Statement

SYSTEM_ROLES = '["system"]'


@functools.lru_cache(maxsize=4096)
def system_user_id(org_id: str) -> str:
    """The deterministic id of `org_id`'s system actor (a valid `usr_<uuidv7>`)."""
    org_uuid = uuid.UUID(org_id.split("_", 1)[1])
    digest = int.from_bytes(hashlib.sha256(f"studiovault-system-actor:{org_id}".encode()).digest()[:16], "big")
    value = (org_uuid.int >> 80) << 80  # the org id's 48-bit millisecond timestamp
    value |= 0x7 << 76  # version 7
    value |= ((digest >> 116) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= digest & ((1 << 62) - 1)  # rand_b: 62 bits
    return f"usr_{uuid.UUID(int=value)}"


# A column for a handler's read snapshot (bind `system_user_id(org_id)`): 1 when the actor exists. Once it
# does it stays (audit rows reference it and are append-only), so the batch can skip inserting it.
SYSTEM_USER_EXISTS = "EXISTS (SELECT 1 FROM users WHERE id = ?)"


def ensure_system_user(org_id: str, now_ms: int) -> Statement:
    """Create the org's system user unless it exists (a no-op after the first time)."""
    return Statement(
        "INSERT INTO users (id, org_id, branch_id, email, roles_json, status, created_at)"
        " VALUES (?, ?, NULL, NULL, ?, 'active', ?) ON CONFLICT DO NOTHING",
        (system_user_id(org_id), org_id, SYSTEM_ROLES, now_ms),
    )


def audit_row(audit_id: str, org_id: str, branch_id: str | None, *, event_type: str, severity: str,
              payload: Mapping[str, Any] | str, now_ms: int, ensure_user: bool = True) -> list[Statement]:
    """An append-only audit row by the org's system actor (created on first use), as two statements;
    one when the caller read that the actor exists (`ensure_user=False`, see `SYSTEM_USER_EXISTS`).

    `payload` is a mapping (written as sorted JSON) or JSON text already made."""
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    return [
        *([ensure_system_user(org_id, now_ms)] if ensure_user else []),
        Statement(
            "INSERT INTO audit_logs (id, org_id, branch_id, actor_user_id, event_type, severity, payload_json,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (audit_id, org_id, branch_id, system_user_id(org_id), event_type, severity, text, now_ms),
        ),
    ]
