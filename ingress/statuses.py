"""What the delivery-status sources share: from verified provider statuses to inbox events.

    the source verifies and parses ─► Reported items ─► tenant of each (the send it names) ─► publish ─► 200

Each status is one `notification.status_reported` event with its own dedupe key, so a provider's
retry of a whole POST records nothing twice. The tenant is the send's: looked up by provider message
id (or the notification id the provider echoed); a status whose send is not recorded yet is filed under
the unattributed placeholder org and the handler resolves it later (it can race the send's own batch).
Answers: 200 `{"accepted": n, "duplicates": n, "ignored": n}` once every item is in the inbox;
401 when the request is not authentically the provider's; 400/422 for bodies that are not what the
provider sends (nothing is written for them); 503 when the inbox cannot be written (the provider retries).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import SecretStr
from starlette.responses import JSONResponse

from events.envelope import envelope_for
from events.ids import InvalidId, validate_id
from events.notifications import UNATTRIBUTED_ORG, NotificationStatusReported
from ingress.pipeline import IngressContext, IngressError
from store import Statement

log = structlog.get_logger("studiovault.ingress")


@dataclass(frozen=True)
class Reported:
    """One verified status, ready to publish."""

    event: NotificationStatusReported
    dedupe_key: str


def notification_id_or_none(value: object) -> str | None:
    """The echoed id when it is one of ours (`ntf_<uuidv7>`); anything else is not ours: None."""
    if not isinstance(value, str):
        return None
    try:
        return validate_id(value, "ntf")
    except InvalidId:
        return None


def obj(value: object) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (absent and malformed optional parts)."""
    return value if isinstance(value, dict) else {}


def configured(values: Sequence[SecretStr], what: str) -> list[str]:
    """The configured secrets or tokens, or 503: nothing can be verified without one."""
    found = [v.get_secret_value() for v in values]
    if not found:
        raise IngressError(503, "not_configured", f"no {what} is configured")
    return found


def matches_any(offered: str, expected: Sequence[str]) -> bool:
    """Constant-time comparison against every expected value (no early exit timing which one matched)."""
    matched = False
    for want in expected:
        matched |= hmac.compare_digest(want.encode(), offered.encode())
    return matched


async def _tenants(ctx: IngressContext, items: Sequence[Reported]) -> list[tuple[str, str | None]]:
    """(org, branch) of the send each status names; the placeholder org when it is not recorded yet."""
    reads: list[Statement] = []
    for item in items:
        e = item.event
        reads.append(Statement(
            "SELECT org_id, branch_id FROM notification_sends WHERE channel = ? AND provider_message_id = ?"
            " UNION ALL SELECT org_id, branch_id FROM notification_sends WHERE id = ? LIMIT 1",
            (e.channel, e.provider_message_id, f"{e.notification_id or ''}/{e.channel}")))
    results = await ctx.db.query_many(reads) if reads else []
    return [(str(rows[0]["org_id"]), str(rows[0]["branch_id"])) if rows else (UNATTRIBUTED_ORG, None)
            for rows in results]


async def publish_statuses(ctx: IngressContext, source: str, items: Sequence[Reported], received_at: datetime,
                           ignored: int = 0) -> JSONResponse:
    """Record every status in the inbox (each deduped on its key), then answer 200 with the counts."""
    counts: dict[str, Any] = {"accepted": 0, "duplicates": 0, "ignored": ignored}
    for item, (org_id, branch_id) in zip(items, await _tenants(ctx, items), strict=True):
        envelope = envelope_for(item.event, org_id=org_id, branch_id=branch_id, dedupe_key=item.dedupe_key,
                                occurred_at=received_at)
        published = await ctx.publish(envelope)
        counts["duplicates" if published.duplicate else "accepted"] += 1
        log.info("webhook_accepted", source=source, event_id=published.event_id, duplicate=published.duplicate,
                 type=envelope.type, org_id=org_id, provider_status=item.event.provider_status)
    return JSONResponse(counts)
