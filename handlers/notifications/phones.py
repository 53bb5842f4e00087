"""Client phone numbers → E.164, with Google's libphonenumber metadata (`phonenumbers`, pinned).

A number is parsed with the branch's country as the default region, so the national forms people
type work: `09876543210` (India's trunk prefix 0), `98765 43210`, `+91 (0) 98765 43210`,
`0091 98765 43210` all become `+919876543210`. A number that is not valid for its country (wrong
length, unassigned range) is refused before any provider is called, with a reason that says why.

The default region comes from, in order: the branch's `address_json.country` or `tax_json.country`,
the org's `config_json.country`, else India. Each must be an ISO 3166 alpha-2 code (`IN`, `AE`, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import phonenumbers

DEFAULT_REGION = "IN"
_WHY = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country calling code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length for its country",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
}


class InvalidPhone(ValueError):
    """The client's phone number cannot be made a valid E.164 number; the message says why."""


def to_e164(raw: str | None, region: str = DEFAULT_REGION) -> str:
    """`raw` as E.164 (`+919876543210`), or `InvalidPhone`."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("no phone number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"{_shown(text)} is not a phone number ({exc})") from exc
    if not phonenumbers.is_valid_number(number):
        why = _WHY.get(phonenumbers.is_possible_number_with_reason(number), "not a valid number for its country")
        raise InvalidPhone(f"{_shown(text)} is not a valid number ({why}; default region {region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _shown(text: str) -> str:
    """The number with its middle masked (it is personal data): `+91 98•••••210`."""
    if len(text) <= 6:
        return "•" * len(text)
    return f"{text[:5]}{'•' * (len(text) - 8)}{text[-3:]}"


def default_region(*json_texts: str | None) -> str:
    """The first `country` (ISO alpha-2, known to libphonenumber) in the given JSON objects, else India."""
    for region in _countries(json_texts):
        code = region.strip().upper()
        if code in phonenumbers.SUPPORTED_REGIONS:
            return code
    return DEFAULT_REGION


def _countries(json_texts: Iterable[str | None]) -> Iterable[str]:
    for text in json_texts:
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(doc, dict):
            for key in ("country", "country_code"):
                value = doc.get(key)
                if isinstance(value, str) and len(value.strip()) == 2:
                    yield value
