"""Pure pricing and billing calendar: tables of hand-worked cases, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from handlers.billing.calendar import (
    InvalidPeriod,
    InvoiceNumberError,
    financial_year,
    invoice_number,
    last_closed_period,
    org_timezone,
    period_bounds,
)
from handlers.billing.pricing import GIB, InvalidTerms, Usage, normalise_state, quote, same_state, state_of, terms_for

MIB = 1024**2
IST = ZoneInfo("Asia/Kolkata")
NYC = ZoneInfo("America/New_York")
D = Decimal


# (tier, overrides, storage bytes, activated projects, notification cost, supplier, place,
#  expected line amounts (storage, projects, notifications), subtotal, taxes, total) — worked by hand.
PRICING_CASES = [
    pytest.param(
        "paid_org", {}, 200 * GIB, 25, D("500.00"), "KA", "KA",
        ("0.00", "0.00", "0.00"), "0.00", [("CGST", "0.00"), ("SGST", "0.00")], "0.00",
        id="paid-exactly-at-every-cap-bills-nothing",
    ),
    pytest.param(
        # 1 GiB over x 4.00 = 4.00; 2 projects over x 99 = 198.00; 512.34 - 500 = 12.34 -> 214.34
        # CGST = SGST = 9% of 214.34 = 19.2906 -> 19.29; total 214.34 + 38.58 = 252.92
        "paid_org", {}, 201 * GIB, 27, D("512.34"), "KA", "KA",
        ("4.00", "198.00", "12.34"), "214.34", [("CGST", "19.29"), ("SGST", "19.29")], "252.92",
        id="paid-over-every-cap-intra-state",
    ),
    pytest.param(
        # same subtotal, other state: IGST 18% of 214.34 = 38.5812 -> 38.58; total 252.92
        "paid_org", {}, 201 * GIB, 27, D("512.34"), "KA", "MH",
        ("4.00", "198.00", "12.34"), "214.34", [("IGST", "38.58")], "252.92",
        id="paid-over-every-cap-inter-state",
    ),
    pytest.param(
        # 1 GiB over x 8.00; 1 project over x 149; free spend 0 so 1.10 at cost -> 158.10
        # 9% = 14.229 -> 14.23 twice = 28.46; total 186.56
        "free_org", {}, 6 * GIB, 3, D("1.10"), "KA", "KA",
        ("8.00", "149.00", "1.10"), "158.10", [("CGST", "14.23"), ("SGST", "14.23")], "186.56",
        id="free-over-every-cap",
    ),
    pytest.param(
        # one byte over at 8.00/GiB = 0.0000000075 -> 0.00: nothing chargeable
        "free_org", {}, 5 * GIB + 1, 2, D("0.00"), "KA", "KA",
        ("0.00", "0.00", "0.00"), "0.00", [("CGST", "0.00"), ("SGST", "0.00")], "0.00",
        id="one-byte-over-rounds-to-nothing",
    ),
    pytest.param(
        # 5 MiB over at 5.12/GiB = 5.12 * 5/1024 = 0.025 exactly -> half up 0.03 (half-even would give 0.02)
        # CGST 9% of 0.03 = 0.0027 -> 0.00; total 0.03
        "free_org", {"storage_rate_per_gib": "5.12"}, 5 * GIB + 5 * MIB, 0, D("0"), "KA", "KA",
        ("0.03", "0.00", "0.00"), "0.03", [("CGST", "0.00"), ("SGST", "0.00")], "0.03",
        id="storage-half-paisa-rounds-up",
    ),
    pytest.param(
        # the same 0.03 inter-state: IGST 18% = 0.0054 -> 0.01, a paisa more than CGST+SGST
        "free_org", {"storage_rate_per_gib": "5.12"}, 5 * GIB + 5 * MIB, 0, D("0"), "KA", "TN",
        ("0.03", "0.00", "0.00"), "0.03", [("IGST", "0.01")], "0.04",
        id="igst-rounds-once-cgst-sgst-round-twice",
    ),
    pytest.param(
        # notifications 0.50 at cost; CGST 9% = 0.045 -> half up 0.05 each -> total 0.60
        "free_org", {}, 0, 0, D("0.50"), "KA", "KA",
        ("0.00", "0.00", "0.50"), "0.50", [("CGST", "0.05"), ("SGST", "0.05")], "0.60",
        id="gst-half-paisa-rounds-up",
    ),
    pytest.param(
        # IGST 18% of 0.50 = 0.09 -> total 0.59
        "free_org", {}, 0, 0, D("0.50"), "KA", "GJ",
        ("0.00", "0.00", "0.50"), "0.50", [("IGST", "0.09")], "0.59",
        id="gst-inter-state-on-half-rupee",
    ),
    pytest.param(
        # caps overridden: 30 included, 32 activated -> 2 x 50.00 = 100.00; storage cap 0 and rate 2.00:
        # 1.5 GiB x 2 = 3.00; spend cap 10: 9.99 -> 0.00. 103.00 -> CGST 9.27 x 2 -> 121.54
        "paid_org",
        {"included_projects": 30, "project_rate": "50", "included_storage_bytes": 0, "storage_rate_per_gib": 2,
         "included_notification_spend": "10"},
        GIB + GIB // 2, 32, D("9.99"), "29", "KA",
        ("3.00", "100.00", "0.00"), "103.00", [("CGST", "9.27"), ("SGST", "9.27")], "121.54",
        id="per-org-overrides-and-gst-numeric-state-code",
    ),
    pytest.param(
        # unknown tier is priced as free_org; place of supply unknown -> the supplier's state (intra)
        "enterprise_xl", {}, 0, 3, D("0"), "KA", None,
        ("0.00", "149.00", "0.00"), "149.00", [("CGST", "13.41"), ("SGST", "13.41")], "175.82",
        id="unknown-tier-is-free-and-unknown-place-is-intra-state",
    ),
]


@pytest.mark.parametrize(
    ("tier", "overrides", "storage", "projects", "spend", "supplier", "place", "lines", "subtotal", "taxes", "total"),
    PRICING_CASES,
)
def test_overage_quote_matches_the_hand_worked_invoice(  # noqa: PLR0917 - one argument per table column
    tier: str, overrides: dict[str, object], storage: int, projects: int, spend: Decimal, supplier: str,
    place: str | None, lines: tuple[str, str, str], subtotal: str, taxes: list[tuple[str, str]], total: str,
) -> None:
    q = quote(Usage(storage, projects, spend), terms_for(tier, overrides), supplier, place)
    assert tuple(str(line.amount) for line in q.lines) == lines
    assert [line.code for line in q.lines] == ["storage", "projects", "notifications"]
    assert str(q.subtotal) == subtotal
    assert [(t.name, str(t.amount)) for t in q.taxes] == taxes
    assert str(q.total) == total
    assert q.chargeable == (subtotal != "0.00")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"project_rate": "abc"}, "not a number"),
        ({"project_rate": "-1"}, "non-negative"),
        ({"included_projects": "2.5"}, "whole number"),
        ({"storage_rate_per_gib": "NaN"}, "non-negative"),
    ],
)
def test_invalid_overrides_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTerms, match=message):
        terms_for("paid_org", overrides)


@pytest.mark.parametrize(
    ("supplier", "place", "intra"),
    [("KA", "KA", True), ("KA", "ka", True), ("29", "KA", True), ("KA", "MH", False), ("27", "MH", True),
     ("KA", None, True), (None, "MH", True)],
)
def test_supply_is_intra_state_when_supplier_and_place_match(supplier: str | None, place: str | None,
                                                               intra: bool) -> None:
    assert same_state(supplier, place) is intra


@pytest.mark.parametrize(
    ("tax", "address", "state"),
    [({"state_code": "ka"}, {}, "KA"), ({}, {"state_code": "MH"}, "MH"), ({"gstin": "27AAACB1234C1Z5"}, {}, "MH"),
     ({"gstin": "07AAACB1234C1Z5"}, {}, "DL"), ({}, {}, None)],
)
def test_branch_state_comes_from_state_code_else_gstin(tax: dict[str, str], address: dict[str, str],
                                                       state: str | None) -> None:
    assert state_of(tax, address) == state
    assert normalise_state("9") == "UP"


@pytest.mark.parametrize(
    ("period", "tz", "start_utc", "end_utc"),
    [
        ("2026-10", IST, "2026-09-30T18:30:00+00:00", "2026-10-31T18:30:00+00:00"),
        ("2026-12", IST, "2026-11-30T18:30:00+00:00", "2026-12-31T18:30:00+00:00"),
        ("2027-02", UTC, "2027-02-01T00:00:00+00:00", "2027-03-01T00:00:00+00:00"),
        # New York leaves daylight time on 2026-11-01 at 02:00: the month starts at -04:00, ends at -05:00
        ("2026-11", NYC, "2026-11-01T04:00:00+00:00", "2026-12-01T05:00:00+00:00"),
    ],
)
def test_a_period_is_the_calendar_month_between_local_midnights(period: str, tz: ZoneInfo, start_utc: str,
                                                                end_utc: str) -> None:
    start, end = period_bounds(period, tz)  # type: ignore[arg-type]
    assert start.astimezone(UTC).isoformat() == start_utc
    assert end.astimezone(UTC).isoformat() == end_utc


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "26-10", "2026/10", ""])
def test_malformed_periods_are_refused(period: str) -> None:
    with pytest.raises(InvalidPeriod):
        period_bounds(period, IST)


@pytest.mark.parametrize(
    ("now", "tz", "period"),
    [
        ("2026-10-31T18:29:59+00:00", IST, "2026-09"),  # 23:59:59 IST on 31 October
        ("2026-10-31T18:30:00+00:00", IST, "2026-10"),  # midnight IST: October has ended
        ("2026-11-01T03:59:59+00:00", NYC, "2026-09"),
        ("2026-11-01T04:00:00+00:00", NYC, "2026-10"),
        ("2027-01-01T00:00:00+00:00", IST, "2026-12"),  # year boundary
    ],
)
def test_last_closed_period_is_the_last_month_ended_in_the_zone(now: str, tz: ZoneInfo, period: str) -> None:
    assert last_closed_period(datetime.fromisoformat(now), tz) == period


@pytest.mark.parametrize(
    ("now", "fy"),
    [
        ("2027-03-31T18:29:59+00:00", "2026-27"),  # 23:59:59 IST, 31 March
        ("2027-03-31T18:30:00+00:00", "2027-28"),  # 00:00 IST, 1 April
        ("2026-04-01T00:00:00+00:00", "2026-27"),
        ("2099-12-01T00:00:00+00:00", "2099-00"),
    ],
)
def test_financial_year_runs_april_to_march_in_india(now: str, fy: str) -> None:
    assert financial_year(datetime.fromisoformat(now), IST) == fy


@pytest.mark.parametrize(
    ("prefix", "seq", "number"),
    [("BLR-", 1, "BLR-2627/0001"), (None, 12, "INV-2627/0012"), ("MUM-", 123456, "MUM-2627/123456"),
     ("", 7, "2627/0007"), ("HQ/GST-", 9999, "HQ/GST-2627/9999")],
)
def test_invoice_numbers_are_prefix_fy_and_serial(prefix: str | None, seq: int, number: str) -> None:
    assert invoice_number(prefix, "2026-27", seq) == number
    assert len(number) <= 16


@pytest.mark.parametrize(("prefix", "seq"), [("BENGALURU-", 1), ("HQ/GST-", 10_000), ("BLR ", 1), ("BLR_", 1)])
def test_invoice_numbers_over_16_characters_or_with_bad_characters_are_refused(prefix: str, seq: int) -> None:
    with pytest.raises(InvoiceNumberError):
        invoice_number(prefix, "2026-27", seq)


def test_org_timezone_defaults_to_kolkata() -> None:
    assert org_timezone({}).key == "Asia/Kolkata"
    assert org_timezone({"timezone": "Not/AZone"}).key == "Asia/Kolkata"
    assert org_timezone({"timezone": "Europe/London"}).key == "Europe/London"
