"""Entity IDs: `<prefix>_<uuidv7>` (the seed's "ID Generation Doctrine").

IDs are made by whoever creates the record (offline desktop clients included) and accepted as
submitted, so every ID that enters the pipeline is validated: known prefix for the column, a UUID of
version 7 and RFC 4122 variant, in canonical lowercase hyphenated form.

This table is the one place prefixes are defined.
"""

from __future__ import annotations

import re
from typing import Annotated

import uuid_utils
from pydantic import AfterValidator

PREFIXES: dict[str, str] = {
    "org": "organizations",
    "brn": "branches",
    "cli": "clients",
    "prj": "projects",
    "pkg": "packages",
    "ast": "assets",
    "med": "media_objects",
    "inv": "invoices",
    "txn": "transactions",
    "msg": "messages",
    "ntf": "notifications",
    "aud": "audit_logs",
    "evt": "event_inbox (pipeline events)",
    "gwa": "gateway_accounts (an org's connected payment gateway account)",
    "usr": "users created by the pipeline (system actors); staff users keep their Firebase UID",
}

# Matched with `fullmatch`: `$` alone would also accept a trailing "\n".
_CANONICAL = re.compile(r"([a-z]{3})_([0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})")


class InvalidId(ValueError):
    """An ID that is not `<known prefix>_<canonical uuidv7>`."""


def new_id(prefix: str) -> str:
    """A fresh, time-sortable ID for `prefix` (see `PREFIXES`)."""
    if prefix not in PREFIXES:
        raise InvalidId(f"unknown ID prefix {prefix!r}; known: {', '.join(sorted(PREFIXES))}")
    return f"{prefix}_{uuid_utils.uuid7()}"


def validate_id(value: str, prefix: str) -> str:
    """Return `value` if it is a valid `prefix` ID, else raise `InvalidId` saying what is wrong."""
    match = _CANONICAL.fullmatch(value)
    if match is None:
        raise InvalidId(_explain(value, prefix))
    if match.group(1) != prefix:
        raise InvalidId(f"ID {value!r} has prefix {match.group(1)!r}; expected {prefix!r} ({PREFIXES[prefix]})")
    return value


def _explain(value: str, prefix: str) -> str:
    head, sep, tail = value.partition("_")
    if not sep:
        return f"ID {value!r} must look like {prefix}_<uuidv7>"
    if head != prefix:
        return f"ID {value!r} has prefix {head!r}; expected {prefix!r}"
    if tail != tail.lower():
        return f"ID {value!r} is not canonical: the UUID must be lowercase"
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", tail):
        return f"ID {value!r} is not a UUID version 7 (version digit {tail[14]!r}, variant {tail[19]!r})"
    return f"ID {value!r}: {tail!r} is not a canonical hyphenated UUID"


def _typed(prefix: str) -> AfterValidator:
    return AfterValidator(lambda value: validate_id(value, prefix))


OrgId = Annotated[str, _typed("org")]
BranchId = Annotated[str, _typed("brn")]
ClientId = Annotated[str, _typed("cli")]
ProjectId = Annotated[str, _typed("prj")]
InvoiceId = Annotated[str, _typed("inv")]
TransactionId = Annotated[str, _typed("txn")]
MediaId = Annotated[str, _typed("med")]
NotificationId = Annotated[str, _typed("ntf")]
EventId = Annotated[str, _typed("evt")]
