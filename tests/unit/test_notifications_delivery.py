"""The pure delivery-status decisions: facts merge in any order to the same result, late failures fall
back only when they should, and a notification's charge follows the rate card's billable moment."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.notifications.delivery import Charge, Facts, Status, charge_after, merge, wants_fallback

DEFAULT_MOMENTS = {"whatsapp": "delivered", "sms": "accepted", "email": "accepted"}

statuses = st.builds(
    Status,
    status=st.sampled_from(["sent", "delivered", "read", "failed", "info"]),
    at_ms=st.integers(1_790_000_000_000, 1_790_000_100_000),
    error_code=st.sampled_from([None, "131026", "131047", "130429"]),
    error_title=st.sampled_from([None, "Message undeliverable", "Re-engagement message"]),
    billable=st.sampled_from([None, True, False]),
)


def fold(items: list[Status]) -> Facts:
    return functools.reduce(merge, items, Facts())


@given(items=st.lists(statuses, max_size=8), data=st.data())
def test_any_order_and_any_duplicates_give_the_same_facts(items: list[Status], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(items))
    repeated = data.draw(st.lists(st.sampled_from(items), max_size=6)) if items else []
    assert fold([*shuffled, *repeated]) == fold(items)


@pytest.mark.parametrize(("reported", "derived"), [
    (["sent"], "sent"), (["read"], "read"), (["delivered", "sent"], "delivered"), (["read", "delivered"], "read"),
    (["sent", "failed"], "failed"), (["failed", "delivered"], "delivered"), ([], "accepted"), (["info"], "accepted"),
])
def test_read_implies_delivered_and_a_failure_after_delivery_does_not_undo_it(reported: list[str],
                                                                              derived: str) -> None:
    facts = fold([Status(s, 1_000 + n, "131026" if s == "failed" else None) for n, s in enumerate(reported)])  # type: ignore[arg-type]
    assert facts.derived_status == derived


def test_the_earliest_failure_is_kept_whatever_arrives_first() -> None:
    early, late = Status("failed", 1_000, "131047", "Re-engagement"), Status("failed", 2_000, "131026", "Undeliverable")
    assert fold([late, early]) == fold([early, late])
    assert (fold([late, early]).failure_code, fold([late, early]).failed_at) == ("131047", 1_000)


FAILED_131026 = fold([Status("sent", 1), Status("failed", 2, "131026")])


@pytest.mark.parametrize(("channel", "facts", "allowed", "sms_claimed", "expected"), [
    ("whatsapp", FAILED_131026, True, False, True),
    ("whatsapp", FAILED_131026, False, False, False),  # the branch has no fallback
    ("whatsapp", FAILED_131026, True, True, False),  # an SMS was already sent or claimed
    ("sms", FAILED_131026, True, False, False),  # SMS has nothing to fall back to
    ("whatsapp", merge(FAILED_131026, Status("delivered", 3)), True, False, False),  # it reached a device
    ("whatsapp", fold([Status("failed", 2, "130429")]), True, False, False),  # a rate limit is not a refusal
    ("whatsapp", fold([Status("failed", 2, "132015")]), True, False, True),  # a paused template: SMS gets through
    ("whatsapp", Facts(failed_at=2, failure_code="131026", fallback_at=5), True, False, False),  # asked already
])
def test_a_late_failure_falls_back_only_when_sms_can_help_and_once(
    channel: str, facts: Facts, allowed: bool, sms_claimed: bool, expected: bool
) -> None:
    assert wants_fallback(channel, facts, allowed=allowed, sms_claimed=sms_claimed) is expected  # type: ignore[arg-type]


PENDING = Charge("whatsapp", "pending", 0.35)
DELIVERED = fold([Status("delivered", 1)])


@pytest.mark.parametrize(("charge", "channel", "facts", "moments", "state"), [
    (PENDING, "whatsapp", DELIVERED, DEFAULT_MOMENTS, "billable"),
    (PENDING, "whatsapp", fold([Status("read", 1)]), DEFAULT_MOMENTS, "billable"),  # read implies delivered
    (PENDING, "whatsapp", fold([Status("sent", 1)]), DEFAULT_MOMENTS, None),  # sent is not delivered
    (PENDING, "whatsapp", FAILED_131026, DEFAULT_MOMENTS, "void"),
    (Charge("whatsapp", "void", 0.35), "whatsapp", DELIVERED, DEFAULT_MOMENTS, "billable"),  # delivered after all
    (PENDING, "whatsapp", fold([Status("delivered", 1, billable=False)]), DEFAULT_MOMENTS, "void"),  # Meta: free
    (Charge("whatsapp", "billable", 0.35), "whatsapp", FAILED_131026, DEFAULT_MOMENTS, None),  # billable is final
    (Charge("sms", "billable", 0.25), "whatsapp", DELIVERED, DEFAULT_MOMENTS, None),  # charged for the fallback
    (Charge("sms", "pending", 0.25), "sms", DELIVERED, {**DEFAULT_MOMENTS, "sms": "delivered"}, "billable"),
    (None, "whatsapp", DELIVERED, DEFAULT_MOMENTS, None),  # recorded before charges existed
])
def test_the_charge_follows_the_rate_cards_billable_moment(
    charge: Charge | None, channel: str, facts: Facts, moments: dict[str, str], state: str | None
) -> None:
    moved = charge_after(charge, channel, facts, moments)  # type: ignore[arg-type]
    assert (moved.state if moved else None) == state
