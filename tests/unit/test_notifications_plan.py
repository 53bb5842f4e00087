"""The pure decisions behind notification dispatch, table by table (no database, no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.money import to_paise
from handlers.notifications.phones import InvalidPhone, default_region, to_e164
from handlers.notifications.plan import (
    Claim,
    ConfigError,
    GiveUp,
    Record,
    Send,
    channel_chain,
    cost_of,
    next_step,
    notify_config,
    quiet_until,
)
from handlers.notifications.templates import format_inr
from providers.ratelimit import wait_until

BRANCH = "brn_01a2101d-abe5-750c-a3eb-7a47c0c52bed"


def cfg(**notifications: object):  # type: ignore[no-untyped-def]
    return notify_config(json.dumps({"notifications": notifications}), BRANCH)


@pytest.mark.parametrize(("now_utc", "quiet", "expected_utc"), [
    # Asia/Kolkata is UTC+05:30; default quiet hours 21:00-09:00.
    ("2026-09-21T17:30:00", None, "2026-09-22T03:30:00"),  # 23:00 IST -> 09:00 IST next day
    ("2026-09-21T15:29:59", None, None),  # 20:59:59 IST: still open
    ("2026-09-21T15:30:00", None, "2026-09-22T03:30:00"),  # 21:00 IST: quiet starts
    ("2026-09-21T20:00:00", None, "2026-09-22T03:30:00"),  # 01:30 IST (next local day) -> 09:00 same day
    ("2026-09-22T03:29:00", None, "2026-09-22T03:30:00"),  # 08:59 IST -> one minute
    ("2026-09-22T03:30:00", None, None),  # 09:00 IST: open
    ("2026-09-22T07:30:00", {"start": "13:00", "end": "14:00"}, "2026-09-22T08:30:00"),  # 13:00 IST, same-day window
    ("2026-09-22T08:30:00", {"start": "13:00", "end": "14:00"}, None),  # 14:00 IST
    ("2026-09-21T17:30:00", "off", None),  # quiet_hours: null turns it off
])
def test_quiet_hours_end_in_the_branch_time_zone(now_utc: str, quiet: object, expected_utc: str | None) -> None:
    config = cfg() if quiet is None else cfg(quiet_hours=None if quiet == "off" else quiet)
    until = quiet_until(datetime.fromisoformat(now_utc).replace(tzinfo=UTC), config)
    expected = datetime.fromisoformat(expected_utc).replace(tzinfo=UTC) if expected_utc else None
    assert until == expected


def test_a_branch_override_wins_over_the_org_settings() -> None:
    config = notify_config(json.dumps({"notifications": {
        "timezone": "Asia/Kolkata", "fallback_to_sms": False,
        "branches": {BRANCH: {"timezone": "Asia/Dubai", "fallback_to_sms": True}}}}), BRANCH)
    assert str(config.timezone) == "Asia/Dubai"
    assert config.fallback_to_sms
    # 21:00 in Dubai (UTC+4) is 17:00 UTC: quiet until 09:00 Dubai = 05:00 UTC.
    assert quiet_until(datetime(2026, 9, 21, 17, 0, tzinfo=UTC), config) == datetime(2026, 9, 22, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", [{"timezone": "Mars/Olympus"}, {"quiet_hours": {"start": "9pm", "end": "09:00"}},
                                 {"rate_card": {"sms": "cheap"}}, {"rate_card": {"sms": -1}},
                                 {"preferred_channel": "pigeon"}, {"rate_per_minute": "fast"}])
def test_an_unusable_config_is_a_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        cfg(**bad)


@pytest.mark.parametrize(("card", "channel", "cost"), [
    (None, "whatsapp", 0.35), (None, "sms", 0.25), (None, "email", 0.05),  # documented defaults
    ({"sms": "0.115"}, "sms", 0.12),  # half-up at the paisa (a float round() would give 0.11)
    ({"sms": "0.125"}, "sms", 0.13),
    ({"whatsapp": 0.784}, "whatsapp", 0.78),
    ({"email": "2"}, "email", 2.0),
    ({"email": "2"}, "sms", 0.25),  # other channels keep their default
])
def test_cost_is_the_rate_card_price_rounded_half_up_to_paise(card: object, channel: str, cost: float) -> None:
    config = cfg(rate_card=card) if card else cfg()
    assert cost_of(channel, config) == cost  # type: ignore[arg-type]


@pytest.mark.parametrize(("requested", "fallback", "chain"), [
    (None, False, ("whatsapp",)), (None, True, ("whatsapp", "sms")), ("whatsapp", True, ("whatsapp", "sms")),
    ("sms", True, ("sms",)), ("email", True, ("email",)),
])
def test_the_channel_chain_falls_back_to_sms_only_after_whatsapp_and_when_allowed(
    requested: str | None, fallback: bool, chain: tuple[str, ...]
) -> None:
    assert channel_chain(requested, cfg(fallback_to_sms=fallback)) == chain  # type: ignore[arg-type]


def c(channel: str, status: str, version: int = 1) -> Claim:
    return Claim(channel, status, version)  # type: ignore[arg-type]


WS = ("whatsapp", "sms")


@pytest.mark.parametrize(("chain", "claims", "failed_now", "replay", "expected"), [
    (WS, {}, set(), False, Send("whatsapp", None)),  # fresh
    (WS, {"whatsapp": c("whatsapp", "retry")}, set(), False, Send("whatsapp", c("whatsapp", "retry"))),
    (WS, {"whatsapp": c("whatsapp", "sent")}, set(), False, Record("whatsapp", c("whatsapp", "sent"), False)),
    # crash between request and batch: WhatsApp has no idempotency key -> record as unknown, never re-send
    (WS, {"whatsapp": c("whatsapp", "sending")}, set(), False, Record("whatsapp", c("whatsapp", "sending"), True)),
    (WS, {"whatsapp": c("whatsapp", "unknown")}, set(), False, Record("whatsapp", c("whatsapp", "unknown"), True)),
    # e-mail takes an Idempotency-Key: re-send with the same key
    (("email",), {"email": c("email", "sending")}, set(), False, Send("email", c("email", "sending"))),
    # WhatsApp refused just now: fall back
    (WS, {"whatsapp": c("whatsapp", "sending")}, {"whatsapp"}, False, Send("sms", None)),
    # WhatsApp refused in an earlier attempt, SMS was in flight when the worker died
    (WS, {"whatsapp": c("whatsapp", "failed"), "sms": c("sms", "sending")}, set(), False,
     Record("sms", c("sms", "sending"), True)),
    (WS, {"whatsapp": c("whatsapp", "failed"), "sms": c("sms", "retry")}, set(), False, Send("sms", c("sms", "retry"))),
    # everything refused
    (WS, {"whatsapp": c("whatsapp", "sending")}, {"whatsapp", "sms"}, False, GiveUp()),
    (("whatsapp",), {"whatsapp": c("whatsapp", "sending")}, {"whatsapp"}, False, GiveUp()),
    # an operator replayed the dead event: start again from the first channel
    (WS, {"whatsapp": c("whatsapp", "failed"), "sms": c("sms", "failed")}, set(), True,
     Send("whatsapp", c("whatsapp", "failed"))),
    (WS, {"whatsapp": c("whatsapp", "failed", 2), "sms": c("sms", "failed")}, {"whatsapp"}, True,
     Send("sms", c("sms", "failed"))),
])
def test_next_step_never_sends_again_after_a_recorded_send(
    chain: tuple[str, ...], claims: dict[str, Claim], failed_now: set[str], replay: bool, expected: object
) -> None:
    assert next_step(chain, claims, frozenset(failed_now), replay) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("phone", "region", "e164"), [
    ("+91 98000 00001", "IN", "+919800000001"), ("9800000001", "IN", "+919800000001"),
    ("0091-98000-00001", "IN", "+919800000001"), ("+1 (415) 555-0100", "IN", "+14155550100"),
    # India's trunk prefix 0, with and without the country code: once mangled to 9109876543210.
    ("09876543210", "IN", "+919876543210"), ("+91 (0) 98765 43210", "IN", "+919876543210"),
    ("919876543210", "IN", "+919876543210"),
    # The branch's country decides what a national number means.
    ("050 123 4567", "AE", "+971501234567"), ("+91 98765 43210", "AE", "+919876543210"),
])
def test_phone_numbers_become_e164_in_the_branch_country(phone: str, region: str, e164: str) -> None:
    assert to_e164(phone, region) == e164


@pytest.mark.parametrize(("phone", "why"), [
    ("", "no phone number"), ("12345", "too short"), ("abc", "is not a phone number"),
    ("050 123 4567", "not a valid number"),  # a UAE mobile typed nationally, read in India
    ("+91 98765 432109", "not a valid number"),
])
def test_numbers_that_cannot_be_made_valid_are_refused_with_the_reason(phone: str, why: str) -> None:
    with pytest.raises(InvalidPhone, match=why):
        to_e164(phone, "IN")


@pytest.mark.parametrize(("jsons", "region"), [
    ((None, None, None), "IN"), (('{"country": "ae"}', None, None), "AE"),
    (('{"state_code": "KA"}', '{"country": "SG"}', '{"country": "AE"}'), "SG"),
    (('{"country": "India"}', None, '{"country": "GB"}'), "GB"),  # names are not codes: skipped
    (("not json", '{"country": "XX"}', None), "IN"),
])
def test_the_default_region_is_the_branch_country_then_the_org_then_india(
    jsons: tuple[str | None, str | None, str | None], region: str
) -> None:
    assert default_region(*jsons) == region


@pytest.mark.parametrize(("paise", "text"), [
    (499900, "₹4,999.00"), (12345650, "₹1,23,456.50"), (100, "₹1.00"), (5, "₹0.05"),
    (1000000000, "₹1,00,00,000.00"), (-118000, "-₹1,180.00"),
])
def test_amounts_use_indian_digit_grouping(paise: int, text: str) -> None:
    assert format_inr(paise) == text


@pytest.mark.parametrize(("amount", "paise"), [(1180.0, 118000), ("0.1", 10), (0.29, 29), (1.005, 101)])
def test_database_amounts_convert_to_paise_without_float_error(amount: float | str, paise: int) -> None:
    assert to_paise(amount) == paise


@pytest.mark.parametrize(("second", "count", "limit", "expected"), [
    (20, 1, 2, None), (20, 2, 2, None),
    (20, 3, 2, "14:14:00"), (20, 4, 2, "14:14:00"), (20, 5, 2, "14:15:00"),  # spread over later windows
])
def test_the_branch_rate_cap_spreads_a_burst_over_later_windows(
    second: int, count: int, limit: int, expected: str | None
) -> None:
    now = datetime(2026, 9, 21, 14, 13, second, tzinfo=UTC)
    until = wait_until(now, count, limit, 60)
    assert (until.strftime("%H:%M:%S") if until else None) == expected


def test_default_rate_card_is_decimal_so_sums_stay_exact() -> None:
    assert sum([cfg().rate_card["sms"]] * 3) == Decimal("0.75")
