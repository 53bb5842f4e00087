"""Our Standard Webhooks verifier, against messages signed by the reference library (standardwebhooks)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from ingress.standard_webhooks import WebhookVerificationError, decode_secret, sign, verify

OLD = "whsec_" + base64.b64encode(b"old-relay-secret-0123456789abcdef").decode()
NEW = "whsec_" + base64.b64encode(b"new-relay-secret-0123456789abcdef").decode()
NOW = 1_790_000_000
BODY = b'{"account":"acc","action":"PutObject"}'


def signed(secret: str, at: int = NOW, msg_id: str = "msg_1", body: bytes = BODY) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def keys(*secrets: str) -> list[bytes]:
    return [decode_secret(s) for s in secrets]


def test_a_message_signed_by_the_reference_library_verifies() -> None:
    message = verify(BODY, signed(NEW), keys(NEW), NOW, 300)
    assert (message.webhook_id, message.timestamp) == ("msg_1", NOW)


def test_our_signature_verifies_with_the_reference_library() -> None:
    now = int(time.time())  # the library checks the timestamp against its own clock
    ours = sign(decode_secret(NEW), "msg_1", now, BODY)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": ours}
    assert Webhook(NEW).verify(BODY, headers) == {"account": "acc", "action": "PutObject"}


def test_during_a_rotation_the_old_secret_still_verifies() -> None:
    verify(BODY, signed(OLD), keys(NEW, OLD), NOW, 300)


def test_one_matching_entry_in_a_space_separated_list_is_enough() -> None:
    headers = signed(NEW)
    headers["webhook-signature"] = "v1a,garbage nocomma v1,AAAA " + headers["webhook-signature"]
    verify(BODY, headers, keys(NEW), NOW, 300)


@pytest.mark.parametrize(
    ("headers", "body", "now", "reason"),
    [
        (signed(OLD), BODY, NOW, "no matching signature found"),  # a secret we do not hold
        (signed(NEW), BODY + b" ", NOW, "no matching signature found"),  # body changed
        ({**signed(NEW), "webhook-id": "msg_2"}, BODY, NOW, "no matching signature found"),
        (signed(NEW, at=NOW - 301), BODY, NOW, "too old"),
        (signed(NEW, at=NOW + 301), BODY, NOW, "too new"),
        ({**signed(NEW), "webhook-signature": "v1,!!not base64!!"}, BODY, NOW, "no matching signature found"),
        ({**signed(NEW), "webhook-signature": "v2," + signed(NEW)["webhook-signature"][3:]}, BODY, NOW,
         "no matching signature found"),  # only v1 is a scheme we know
        ({"webhook-id": "msg_1", "webhook-timestamp": str(NOW)}, BODY, NOW, "missing"),
        ({**signed(NEW), "webhook-timestamp": "yesterday"}, BODY, NOW, "not an integer"),
    ],
)
def test_a_message_that_is_not_ours_or_not_fresh_is_refused_with_the_reason(
    headers: dict[str, str], body: bytes, now: int, reason: str
) -> None:
    with pytest.raises(WebhookVerificationError) as caught:
        verify(body, headers, keys(NEW), now, 300)
    assert reason in str(caught.value)


def test_the_tolerance_edges_are_inclusive() -> None:
    verify(BODY, signed(NEW, at=NOW - 300), keys(NEW), NOW, 300)
    verify(BODY, signed(NEW, at=NOW + 300), keys(NEW), NOW, 300)


def test_with_no_secret_configured_nothing_verifies() -> None:
    with pytest.raises(WebhookVerificationError, match="no webhook secret"):
        verify(BODY, signed(NEW), [], NOW, 300)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_***", ""])
def test_a_malformed_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError, match="Standard Webhooks secret"):
        decode_secret(secret)
