"""Pure overage pricing: plan tiers, caps, overage rates, rounding to the paisa, and the GST split.

Default terms per period (a calendar month), overridable per org in `config_json.billing` under the
same names (money as strings, e.g. `{"billing": {"storage_rate_per_gib": "3.50"}}`):

| term                          | free_org    | paid_org     |
|-------------------------------|-------------|--------------|
| included_storage_bytes        | 5 GiB       | 200 GiB      |
| storage_rate_per_gib          | ₹8.00       | ₹4.00        |  per GiB over the cap, prorated to the byte
| included_projects             | 2           | 25           |  projects activated in the period
| project_rate                  | ₹149.00     | ₹99.00       |  per activated project over the cap
| included_notification_spend   | ₹0.00       | ₹500.00      |  notification cost beyond it is billed at cost

Storage is the org's total `media_objects.size_bytes` when the period is billed. Each line is
rounded to the paisa (ROUND_HALF_UP); GST is 18% of the subtotal: CGST 9% + SGST 9% (each rounded)
when supplier and place of supply are in the same state, else IGST 18%.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from core.money import money

GIB = 1024**3
ZERO = Decimal("0.00")
GST_RATE = Decimal("18")
HALF_GST_RATE = Decimal("9")
DEFAULT_TIER = "free_org"


class InvalidTerms(ValueError):
    """A `config_json.billing` override that is not a valid amount or count."""


@dataclass(frozen=True)
class PlanTerms:
    included_storage_bytes: int
    storage_rate_per_gib: Decimal
    included_projects: int
    project_rate: Decimal
    included_notification_spend: Decimal


TIERS: dict[str, PlanTerms] = {
    "free_org": PlanTerms(5 * GIB, Decimal("8.00"), 2, Decimal("149.00"), Decimal("0.00")),
    "paid_org": PlanTerms(200 * GIB, Decimal("4.00"), 25, Decimal("99.00"), Decimal("500.00")),
}


@dataclass(frozen=True)
class Usage:
    storage_bytes: int
    activated_projects: int
    notification_cost: Decimal  # the cost of the unbilled notifications this period bills
    notification_count: int = 0


@dataclass(frozen=True)
class Line:
    code: str  # storage, projects, notifications
    usage: Decimal  # bytes, projects, rupees
    included: Decimal
    billable: Decimal  # usage beyond the cap
    rate: Decimal
    amount: Decimal  # rounded to the paisa


@dataclass(frozen=True)
class Tax:
    name: str  # CGST, SGST, IGST
    rate: Decimal  # percent
    amount: Decimal


@dataclass(frozen=True)
class Quote:
    lines: tuple[Line, ...]
    subtotal: Decimal
    taxes: tuple[Tax, ...]
    total: Decimal

    @property
    def tax_total(self) -> Decimal:
        return sum((t.amount for t in self.taxes), ZERO)

    @property
    def chargeable(self) -> bool:
        return self.subtotal > 0


def terms_for(tier: str | None, overrides: Mapping[str, Any] | None = None) -> PlanTerms:
    """The tier's defaults (unknown or missing tier: free_org) with the org's overrides applied."""
    terms = TIERS.get(tier or DEFAULT_TIER, TIERS[DEFAULT_TIER])
    changes: dict[str, Any] = {}
    for field in fields(PlanTerms):
        if overrides is None or field.name not in overrides:
            continue
        raw = overrides[field.name]
        try:
            value = Decimal(str(raw))
        except InvalidOperation as exc:
            raise InvalidTerms(f"billing.{field.name} = {raw!r} is not a number") from exc
        if not value.is_finite() or value < 0 or isinstance(raw, bool):
            raise InvalidTerms(f"billing.{field.name} = {raw!r} must be a non-negative number")
        if field.type == "int":
            if value != value.to_integral_value():
                raise InvalidTerms(f"billing.{field.name} = {raw!r} must be a whole number")
            changes[field.name] = int(value)
        else:
            changes[field.name] = value
    return replace(terms, **changes)


def price(usage: Usage, terms: PlanTerms) -> tuple[Line, ...]:
    """The three overage lines (amount 0.00 where usage is within the cap)."""
    over_bytes = max(usage.storage_bytes - terms.included_storage_bytes, 0)
    over_projects = max(usage.activated_projects - terms.included_projects, 0)
    over_spend = max(usage.notification_cost - terms.included_notification_spend, ZERO)
    return (
        Line("storage", Decimal(usage.storage_bytes), Decimal(terms.included_storage_bytes), Decimal(over_bytes),
             terms.storage_rate_per_gib, money(Decimal(over_bytes) * terms.storage_rate_per_gib / GIB)),
        Line("projects", Decimal(usage.activated_projects), Decimal(terms.included_projects),
             Decimal(over_projects), terms.project_rate, money(over_projects * terms.project_rate)),
        Line("notifications", usage.notification_cost, terms.included_notification_spend, over_spend,
             Decimal(1), money(over_spend)),
    )


def same_state(supplier_state: str | None, place_of_supply: str | None) -> bool:
    """Intra-state supply? Unknown place of supply counts as the supplier's (IGST Act s.12(2)(b))."""
    if place_of_supply is None or supplier_state is None:
        return True
    return normalise_state(supplier_state) == normalise_state(place_of_supply)


def gst(subtotal: Decimal, supplier_state: str | None, place_of_supply: str | None) -> tuple[Tax, ...]:
    if same_state(supplier_state, place_of_supply):
        half = money(subtotal * HALF_GST_RATE / 100)
        return Tax("CGST", HALF_GST_RATE, half), Tax("SGST", HALF_GST_RATE, half)
    return (Tax("IGST", GST_RATE, money(subtotal * GST_RATE / 100)),)


def quote(usage: Usage, terms: PlanTerms, supplier_state: str | None, place_of_supply: str | None) -> Quote:
    lines = price(usage, terms)
    subtotal = sum((line.amount for line in lines), ZERO)
    taxes = gst(subtotal, supplier_state, place_of_supply)
    return Quote(lines, subtotal, taxes, subtotal + sum((t.amount for t in taxes), ZERO))


# GST state codes (the first two digits of a GSTIN) → the two-letter state/UT code.
GST_STATE_CODES: dict[str, str] = {
    "01": "JK", "02": "HP", "03": "PB", "04": "CH", "05": "UK", "06": "HR", "07": "DL", "08": "RJ", "09": "UP",
    "10": "BR", "11": "SK", "12": "AR", "13": "NL", "14": "MN", "15": "MZ", "16": "TR", "17": "ML", "18": "AS",
    "19": "WB", "20": "JH", "21": "OR", "22": "CG", "23": "MP", "24": "GJ", "26": "DN", "27": "MH", "29": "KA",
    "30": "GA", "31": "LD", "32": "KL", "33": "TN", "34": "PY", "35": "AN", "36": "TS", "37": "AP", "38": "LA",
}


def normalise_state(code: str) -> str:
    """'29', 'ka', 'KA' → 'KA'."""
    code = code.strip().upper()
    return GST_STATE_CODES.get(code.zfill(2) if code.isdigit() else code, code)


def state_of(tax: Mapping[str, Any], address: Mapping[str, Any]) -> str | None:
    """A branch's (or org's) state: `state_code` in its tax or address JSON, else its GSTIN's first two digits."""
    for source in (tax, address):
        code = source.get("state_code") or source.get("state")
        if isinstance(code, str) and code.strip():
            return normalise_state(code)
    gstin = tax.get("gstin")
    if isinstance(gstin, str) and len(gstin) >= 2 and gstin[:2].isdigit():
        return normalise_state(gstin[:2])
    return None
