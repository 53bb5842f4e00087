"""Self-check of the status-webhook fakes against independent implementations.

Run: `cd /work/main && .venv/bin/python -m tests.support.fakes.status.selftest` (prints OK lines).

- WhatsApp: the signature on the wire is recomputed with `hmac` and with a from-scratch RFC 2104
  HMAC over `hashlib.sha256`, on the bytes an httpx receiver actually got.
- Resend: verified by the reference `standardwebhooks` library (and by `svix` when installed), signed
  by it for a fixed timestamp and compared byte for byte, rotation and the 5-minute window included.
- MSG91: the v2 form body decodes back to the documented nesting; the v3 / new bodies are flat JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support.fakes.status import msg91, resend, whatsapp

APP_SECRET = "meta-app-secret-0123456789abcdef"
RESEND_SECRET = resend.make_secret(b"resend-signing-key-0123456789ab")
OLD_RESEND_SECRET = resend.make_secret(b"old-resend-signing-key-01234567")


class SelfTestFailure(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SelfTestFailure(what)


def capture(request: httpx.Request) -> httpx.Request:
    """Send through an httpx client to a recording transport: returns what a receiver would see."""
    seen: list[httpx.Request] = []

    def handler(received: httpx.Request) -> httpx.Response:
        received.read()
        seen.append(received)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.send(request)
    check(len(seen) == 1, "the request reached the receiver once")
    return seen[0]


def rfc2104_hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC written out from RFC 2104, independent of the `hmac` module."""
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + message).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def whatsapp_checks() -> None:
    wamid = whatsapp.new_wamid()
    when = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    failed = whatsapp.status(wamid, "failed", when, biz_opaque_callback_data="ntf_01J9Z-ünïcode",
                             errors=[whatsapp.error(131026)])
    delivered = whatsapp.status(whatsapp.new_wamid(), "delivered", 1_772_359_200,
                                pricing_info=whatsapp.pricing("utility"))
    body = whatsapp.statuses_body([failed, delivered])
    received = capture(whatsapp.post_request("https://ingress.test/webhooks/whatsapp", body, APP_SECRET))
    raw = received.content
    header = received.headers[whatsapp.SIGNATURE_HEADER]
    check(raw.isascii(), "WhatsApp body is ASCII-only JSON")
    expected = "sha256=" + hmac.new(APP_SECRET.encode("utf-8"), raw, hashlib.sha256).hexdigest()
    check(hmac.compare_digest(header, expected), "X-Hub-Signature-256 matches hmac over the wire bytes")
    check(header == "sha256=" + rfc2104_hmac_sha256(APP_SECRET.encode(), raw).hex(), "matches RFC 2104 HMAC")
    check(whatsapp.sign(raw + b" ", APP_SECRET) != header, "a changed body changes the signature")
    check(whatsapp.sign(raw, APP_SECRET + "x") != header, "another secret gives another signature")

    parsed = json.loads(raw)
    check(parsed["object"] == "whatsapp_business_account", "object")
    value = parsed["entry"][0]["changes"][0]["value"]
    check(parsed["entry"][0]["changes"][0]["field"] == "messages", "field is messages")
    check(value["metadata"]["phone_number_id"] == whatsapp.PHONE_NUMBER_ID, "metadata.phone_number_id")
    first, second = value["statuses"]
    check(first["id"] == wamid and first["status"] == "failed", "failed status carries the wamid")
    check(first["timestamp"] == str(int(when.timestamp())), "timestamp is unix seconds as a string")
    check(first["biz_opaque_callback_data"] == "ntf_01J9Z-ünïcode", "biz_opaque_callback_data round-trips")
    check(first["errors"][0]["code"] == 131026 and "details" in first["errors"][0]["error_data"], "errors[]")
    check("pricing" not in first, "no pricing on a failed status by default")
    check(second["pricing"] == {"billable": True, "pricing_model": "PMP", "type": "regular",
                                "category": "utility"}, "PMP pricing object")

    get = capture(whatsapp.verification_request("https://ingress.test/webhooks/whatsapp", "verify-me", "1158201444"))
    query = parse_qs(urlsplit(str(get.url)).query)
    check(get.method == "GET", "verification is a GET")
    check(query == {"hub.mode": ["subscribe"], "hub.verify_token": ["verify-me"], "hub.challenge": ["1158201444"]},
          "verification query")


def resend_checks() -> None:
    body = resend.email_event("email.bounced", resend.new_email_id(),
                              tags={"notification_id": "ntf_01J9Z", "kind": "invoice_due"})
    now = int(time.time())  # the reference library checks the timestamp against its own clock
    received = capture(resend.post_request("https://ingress.test/webhooks/resend", body, RESEND_SECRET,
                                           timestamp=now))
    raw = received.content
    headers = {
        "webhook-id": received.headers["svix-id"], "webhook-timestamp": received.headers["svix-timestamp"],
        "webhook-signature": received.headers["svix-signature"],
    }
    check(Webhook(RESEND_SECRET).verify(raw, headers) == body, "standardwebhooks verifies and parses the body")
    check(received.headers["svix-id"].startswith("msg_"), "svix-id looks like a Svix message id")

    fixed = 1_790_000_000
    ours = resend.sign(RESEND_SECRET, "msg_fixed", fixed, raw)
    reference = Webhook(RESEND_SECRET).sign("msg_fixed", datetime.fromtimestamp(fixed, tz=UTC), raw.decode())
    check(ours == reference, "signature equals standardwebhooks' own for a fixed id and timestamp")

    rotated = resend.signed_headers(raw, OLD_RESEND_SECRET, msg_id="msg_rot", timestamp=now,
                                    also_signed_with=[RESEND_SECRET], prefix="webhook")
    check(Webhook(RESEND_SECRET).verify(raw, rotated) == body, "a rotation header verifies with the new secret")
    check(Webhook(OLD_RESEND_SECRET).verify(raw, rotated) == body, "... and with the old one")

    expect_rejected(lambda: Webhook(RESEND_SECRET).verify(raw, {**headers, "webhook-timestamp": str(now - 301)}),
                    "a timestamp more than 5 minutes old is rejected")
    expect_rejected(lambda: Webhook(RESEND_SECRET).verify(raw + b" ", headers), "a changed body is rejected")
    expect_rejected(lambda: Webhook(OLD_RESEND_SECRET).verify(raw, headers), "another secret is rejected")

    check(body["data"]["bounce"]["type"] == "Permanent", "bounced events carry data.bounce")  # type: ignore[index]
    failed = resend.email_event("email.failed", resend.new_email_id())
    check(failed["data"]["failed"] == {"reason": "reached_daily_quota"}, "failed events carry data.failed")  # type: ignore[index]
    svix_check(raw, received.headers, body)


def expect_rejected(attempt: Callable[[], object], what: str) -> None:
    try:
        attempt()
    except WebhookVerificationError:
        return
    raise SelfTestFailure(what)


def svix_check(raw: bytes, headers: httpx.Headers, body: object) -> None:
    try:
        svix_webhooks = importlib.import_module("svix.webhooks")
    except ImportError:
        sys.stdout.write("resend: svix not installed, checked against standardwebhooks only\n")
        return
    svix_headers = {k: headers[k] for k in ("svix-id", "svix-timestamp", "svix-signature")}
    check(svix_webhooks.Webhook(RESEND_SECRET).verify(raw, svix_headers) == body, "svix verifies the body")
    sys.stdout.write("resend: svix verifies too\n")


def msg91_checks() -> None:
    request_id = msg91.new_request_id()
    when = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)
    url = msg91.url_with_token("https://ingress.test/webhooks/msg91", "s3cr3t/token")
    check(url == "https://ingress.test/webhooks/msg91/s3cr3t%2Ftoken", "token as a path segment")
    check(msg91.url_with_token("https://x.test/dlr?v=2", "t", "query") == "https://x.test/dlr?v=2&token=t", "query")

    received = capture(msg91.v2_request(url, request_id, [msg91.report("919876543210", msg91.DELIVERED, when)]))
    check(received.headers["content-type"] == "application/x-www-form-urlencoded", "v2 is form-encoded")
    form = parse_qs(received.content.decode())
    check(list(form) == ["data"], "v2 posts a single `data` field")
    (batch,) = json.loads(form["data"][0])
    check(batch["requestId"] == request_id, "v2 requestId")
    entry = batch["report"][0]
    check((entry["number"], entry["status"], entry["desc"]) == ("919876543210", "1", "DELIVERED"), "v2 report")
    check(entry["date"] == "2026-03-01 10:00:00", "MSG91 date is the IST wall clock")
    check(all(isinstance(v, str) for v in entry.values()), "every report value is a string")

    flat = msg91.v3_body(request_id, "919876543210", msg91.FAILED, when)
    received = capture(msg91.json_request(url, flat))
    check(json.loads(received.content) == flat and flat["desc"] == "FAILED", "v3 is one flat JSON object")
    new = msg91.webhook_new_body(request_id, "919876543210", msg91.REJECTED, when, when)
    check(new["requestId"] == request_id and new["telNum"] == "919876543210", "Webhook (New) field names")


def main() -> None:
    for name, run in (("whatsapp", whatsapp_checks), ("resend", resend_checks), ("msg91", msg91_checks)):
        run()
        sys.stdout.write(f"{name}: OK\n")
    sys.stdout.write("OK\n")


if __name__ == "__main__":
    main()
