"""Entity IDs: `<prefix>_<uuidv7>`, canonical, validated whole (no trailing newline slips through)."""

from __future__ import annotations

import uuid

import pytest

from events.ids import InvalidId, new_id, validate_id


def test_a_fresh_id_validates_for_its_prefix() -> None:
    assert validate_id(new_id("org"), "org").startswith("org_")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i + "\n", "not a canonical hyphenated UUID"),
        (lambda i: i + " ", "not a canonical hyphenated UUID"),
        (lambda i: "\n" + i, "has prefix"),
        (lambda i: i.upper().replace("ORG_", "org_"), "lowercase"),
        (lambda i: "org_" + str(uuid.uuid4()), "not a UUID version 7"),
        (lambda i: i.replace("org_", "prj_"), "has prefix 'prj'"),
        (lambda i: i.replace("-", ""), "not a canonical hyphenated UUID"),
    ],
)
def test_an_id_that_is_not_exactly_canonical_is_refused_with_the_reason(make: object, reason: str) -> None:
    value = make(new_id("org"))  # type: ignore[operator]
    with pytest.raises(InvalidId, match=reason):
        validate_id(value, "org")
