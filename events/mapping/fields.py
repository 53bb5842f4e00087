"""Reading gateway documents: fields checked for type, errors that name the field, notes/metadata."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from events.payments import ObjectKind, PaymentFact


class MappingError(Exception):
    """A document that cannot become a fact. `status` is the answer a webhook gets (422: do not resend as
    it is; 503: not yet, retry), `code` the machine-readable reason, `field` the path at fault."""

    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field, self.retry_after = status, code, detail, field, retry_after


@dataclass(frozen=True)
class Fact:
    """A gateway document mapped to one of our payment facts; the invoice may still need resolving."""

    cls: type[PaymentFact]
    fields: dict[str, Any]
    invoice_id: str | None  # None: find it from the payment id in the ledger (Stripe refunds/disputes)
    tenant_notes: Mapping[str, Any] = field(default_factory=dict)  # org_id/branch_id the app put in notes

    @property
    def kind(self) -> ObjectKind:
        return self.cls.kind

    def object_id(self) -> str:
        """The gateway object the fact records, as `PaymentFact.object_id` will say."""
        for name in ("refund_id", "dispute_id", "attempt_id"):
            if name in self.fields and name in self.cls.model_fields:
                return str(self.fields[name])
        return str(self.fields["payment_id"])


@dataclass(frozen=True)
class Ignore:
    """A document we acknowledge and do not apply, and why."""

    reason: str


EVENT_TYPE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


def event_type_of(doc: Mapping[str, Any], key: str, gateway: str) -> str:
    """The document's event type (dotted lower-case words, as both gateways name them), or 422."""
    event_type = doc.get(key)
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise MappingError(422, "unknown_event_type", f"'{key}' must be a {gateway} event type, got {event_type!r}",
                           field=key)
    return event_type


def pick(doc: Mapping[str, Any], path: str, typ: type | tuple[type, ...], required: bool = True) -> Any:
    """`doc["a"]["b"]` for path "a.b", checked against `typ`; a clear 422 naming the field otherwise."""
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            if required:
                raise MappingError(422, "missing_field", f"required field {path} is missing", field=path)
            return None
    if (isinstance(node, bool) and typ is int) or not isinstance(node, typ):
        raise MappingError(422, "invalid_field", f"field {path} has the wrong type", field=path)
    return node


def notes_of(doc: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Razorpay notes / Stripe metadata; Razorpay sends `[]` for empty notes."""
    node = pick(doc, path, (dict, list), required=False)
    return node if isinstance(node, dict) else {}
