"""A mapped fact, signed by one of our gateway accounts → the envelope to publish.

The tenant comes from the account, never from the payload: a studio's account files its facts under its
own org; the platform's account (overage invoices) under the invoice's org. The handler then applies a
fact only to an invoice of the account's org (or, for the platform, an overage invoice): a payload that
names anyone else's invoice is dead-lettered `wrong_tenant` with nothing written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from events.envelope import Envelope, envelope_for
from events.ids import InvalidId, validate_id
from events.mapping.fields import Fact, MappingError
from events.payments import AccountRole, Gateway, GatewayEventIgnored, GatewayEvidence, gateway_dedupe_key
from store import Database

# The inbox needs an org for every event; a gateway event we cannot attribute (an ignored type on the
# platform's account, an unknown invoice) is filed under this placeholder. It owns no rows, so nothing
# attributed to it can ever pass a handler's tenant check.
UNATTRIBUTED_ORG = "org_00000000-0000-7000-8000-000000000000"


@dataclass(frozen=True)
class Signer:
    """The gateway account a fact was signed by (or listed from), as our `gateway_accounts` row says."""

    gateway: Gateway
    account_id: str  # the gateway's id of the account: acc_... / acct_...
    role: AccountRole
    org_id: str | None  # the owning studio; None for the platform's account


@dataclass(frozen=True)
class Located:
    invoice_id: str
    org_id: str | None  # None: the invoice does not exist
    branch_id: str | None


async def locate(db: Database, signer: Signer, fact: Fact, known_payments: Mapping[str, str] | None = None) -> Located:
    """The invoice a fact is for: named in its notes, or the one its payment was recorded on (in the ledger,
    under the same account, or in `known_payments`: payment id → invoice id, from the same run)."""
    invoice_id = fact.invoice_id
    if invoice_id is None:
        payment_id = str(fact.fields["payment_id"])
        rows = await db.query(
            "SELECT invoice_id FROM gateway_objects WHERE gateway = ? AND payment_id = ? AND account_id IN (?, '')"
            " ORDER BY kind = 'capture' DESC LIMIT 1", (signer.gateway, payment_id, signer.account_id))
        invoice_id = str(rows[0]["invoice_id"]) if rows else (known_payments or {}).get(payment_id)
        if invoice_id is None:
            raise MappingError(503, "payment_not_yet_known",
                               f"{fact.cls.event_type} names payment {payment_id} and no invoice, and that payment has"
                               " not been recorded yet; retry later", retry_after=60)
    else:
        try:
            validate_id(invoice_id, "inv")
        except InvalidId as exc:
            raise MappingError(422, "invalid_field", f"invoice_id: {exc}", field="invoice_id") from exc
    rows = await db.query("SELECT i.branch_id, b.org_id FROM invoices i JOIN branches b ON b.id = i.branch_id"
                          " WHERE i.id = ?", (invoice_id,))
    if not rows:
        return Located(invoice_id, None, None)
    return Located(invoice_id, str(rows[0]["org_id"]), str(rows[0]["branch_id"]))


def _tenant_from_notes(notes: Mapping[str, object]) -> tuple[str | None, str | None]:
    org, branch = notes.get("org_id"), notes.get("branch_id")
    try:
        return (validate_id(org, "org") if isinstance(org, str) else None,
                validate_id(branch, "brn") if isinstance(branch, str) else None)
    except InvalidId as exc:
        raise MappingError(422, "invalid_field", f"tenant notes: {exc}", field="notes") from exc


def _tenant(signer: Signer, fact: Fact, where: Located) -> tuple[str, str | None]:
    """(org, branch) of the envelope: the account's org (the platform's: the invoice's), never the notes';
    the invoice's branch when the invoice is in that org. Notes naming an org or branch are the app's claim:
    one that contradicts them leaves the branch unset, and the handler refuses the event `wrong_tenant`."""
    org = signer.org_id if signer.role == "studio" else where.org_id
    branch = where.branch_id if org is not None and where.org_id == org else None
    noted_org, noted_branch = _tenant_from_notes(fact.tenant_notes)
    if (noted_org is not None and noted_org != org) or (noted_branch is not None and noted_branch != branch):
        branch = None
    return org or UNATTRIBUTED_ORG, branch


async def fact_envelope(db: Database, signer: Signer, fact: Fact, evidence: GatewayEvidence,
                        known_payments: Mapping[str, str] | None = None) -> Envelope:
    """The envelope of `fact`; `MappingError` when it cannot be one (422) or not yet (503)."""
    if fact.cls.kind == "capture" and fact.fields.get("amount_minor") == 0:
        raise MappingError(422, "zero_amount", "a capture of amount 0 moves no money: refused, nothing recorded",
                           field="amount")
    where = await locate(db, signer, fact, known_payments)
    org_id, branch_id = _tenant(signer, fact, where)
    try:
        event = fact.cls(gateway=signer.gateway, invoice_id=where.invoice_id, evidence=evidence,
                         account_id=signer.account_id, account_role=signer.role, account_org_id=signer.org_id,
                         **fact.fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors())
        raise MappingError(422, "invalid_field", f"{fact.cls.event_type}: {problems}") from exc
    return envelope_for(event, org_id=org_id, branch_id=branch_id, dedupe_key=event.dedupe_key(),
                        occurred_at=evidence.received_at, correlation_id=evidence.gateway_event_id,
                        received_at=evidence.received_at)


def ignored_envelope(signer: Signer | None, gateway: Gateway, evidence: GatewayEvidence, reason: str) -> Envelope:
    """A verified delivery we acknowledge and do not apply, filed under the account's org."""
    event = GatewayEventIgnored(gateway=gateway, reason=reason, evidence=evidence)
    org = signer.org_id if signer is not None and signer.org_id else UNATTRIBUTED_ORG
    return envelope_for(event, org_id=org, branch_id=None,
                        dedupe_key=gateway_dedupe_key(gateway, evidence.gateway_event_id),
                        occurred_at=evidence.received_at, correlation_id=evidence.gateway_event_id,
                        received_at=evidence.received_at)
