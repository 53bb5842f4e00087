"""`studiovault accounts ...` and `studiovault reconcile` as an operator runs them: real CLI processes on a
SQLite file, Redis and a local Razorpay list API; secrets go in on standard input and never come out."""

from __future__ import annotations

import json
import subprocess

import pytest
from cryptography.fernet import Fernet

from store.sqlite import SqliteDatabase
from tests.support.factories import make_tenant
from tests.support.fakes.payloads import now, rzp_payment
from tests.support.fakes.razorpay_api import RazorpayApiState, serve_razorpay_api
from tests.support.gateway import TEST_ENCRYPTION_KEY
from tests.support.processes import CLI, ROOT, pipeline_env

WEBHOOK_SECRET = "whsec-cli-do-not-print-me"
KEY_SECRET = "rzp-key-secret-do-not-print-me"


def sv(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.slow
async def test_connect_rotate_list_reconcile_and_disconnect_without_ever_printing_a_secret(
    sqlite_db: SqliteDatabase, redis_url: str
) -> None:
    tenant = await make_tenant(sqlite_db, amount_total=500.0, due_at=None)
    api = RazorpayApiState()
    fake = api.add_account("acc_CliStudio000001", "rzp_test_cli", KEY_SECRET)
    fake.add("payments", rzp_payment(amount=50_000, notes={"invoice_id": tenant.invoice_id}, created_at=now() - 60))
    async with serve_razorpay_api(api) as api_url:
        env = pipeline_env(f"sqlite:///{sqlite_db.path}", redis_url,
                           SV_ACCOUNTS_ENCRYPTION_KEYS=json.dumps([TEST_ENCRYPTION_KEY]), SV_RAZORPAY_API_URL=api_url,
                           SV_GATEWAY_API_BACKOFF_BASE="0.01")
        secrets = json.dumps({"webhook_secrets": [WEBHOOK_SECRET], "api_key_id": "rzp_test_cli",
                              "api_key_secret": KEY_SECRET})
        connected = sv(env, "accounts", "connect", "--gateway", "razorpay", "--account-id", "acc_CliStudio000001",
                       "--org", tenant.org_id, stdin=secrets)
        assert connected.returncode == 0, connected.stderr
        assert "/webhooks/razorpay/" in connected.stdout
        twice = sv(env, "accounts", "connect", "--gateway", "razorpay", "--account-id", "acc_CliStudio000001",
                   "--org", tenant.org_id, stdin=secrets)
        assert twice.returncode == 2
        assert "already connected" in twice.stdout

        listed = sv(env, "accounts", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = json.loads(listed.stdout)
        assert (row["org_id"], row["account"], row["webhook_secrets"], row["api_key"]) == (
            tenant.org_id, "acc_CliStudio000001", 1, True)

        rotated = sv(env, "accounts", "rotate-secret", row["id"], stdin="whsec-cli-new-one\n")
        assert rotated.returncode == 0, rotated.stderr
        assert "2 secret(s) verify now" in rotated.stdout

        (checkpoint_before,) = await sqlite_db.query("SELECT reconciled_until FROM gateway_accounts")
        assert checkpoint_before == {"reconciled_until": None}
        api.fail_next(1)  # one 429 on the way
        reconciled = sv(env, "reconcile", "--org", tenant.org_id)
        assert reconciled.returncode == 0, reconciled.stderr
        assert "reconciliation" in reconciled.stdout
        assert "acc_CliStudio000001" in reconciled.stdout
        keys = await sqlite_db.query("SELECT dedupe_key, status FROM event_inbox WHERE type = 'payment.captured'")
        assert [k["status"] for k in keys] == ["pending"]
        assert keys[0]["dedupe_key"].startswith("razorpay:acc_CliStudio000001:capture:pay_")
        (checkpoint,) = await sqlite_db.query("SELECT reconciled_until FROM gateway_accounts")
        assert checkpoint["reconciled_until"] is not None

        for keys in ("[]", json.dumps([Fernet.generate_key().decode()])):  # none, or not the one it was encrypted with
            keyless = sv({**env, "SV_ACCOUNTS_ENCRYPTION_KEYS": keys}, "reconcile", "--org", tenant.org_id)
            assert keyless.returncode == 1, keyless.stderr
            assert keyless.stderr.startswith("studiovault: a gateway account"), keyless.stderr  # not a crash
            assert keyless.stderr.count("\n") == 1, keyless.stderr
            assert "SV_ACCOUNTS_ENCRYPTION_KEYS" in keyless.stderr

        disconnected = sv(env, "accounts", "disconnect", row["id"])
        assert disconnected.returncode == 0, disconnected.stderr
        listed = json.loads(sv(env, "accounts", "list", "--json").stdout)
        assert (listed[0]["status"], listed[0]["webhook_secrets"], listed[0]["api_key"]) == ("disconnected", 0, False)

    everything = [connected, twice, rotated, reconciled, disconnected]
    for done in everything:
        for secret in (WEBHOOK_SECRET, KEY_SECRET, "whsec-cli-new-one", TEST_ENCRYPTION_KEY):
            assert secret not in done.stdout + done.stderr
    raw = await sqlite_db.query("SELECT credentials FROM gateway_accounts")
    assert all(WEBHOOK_SECRET not in str(r["credentials"]) for r in raw)


@pytest.mark.slow
def test_connect_refuses_secrets_on_the_command_line_and_bad_input(tmp_path: object) -> None:
    env = pipeline_env("sqlite:///unused.db", "redis://127.0.0.1:1/0",
                       SV_ACCOUNTS_ENCRYPTION_KEYS=json.dumps([TEST_ENCRYPTION_KEY]))
    refused = sv(env, "accounts", "connect", "--gateway", "razorpay", "--account-id", "acc_X0000000000001",
                 "--org", "org_x", "--secret", "oops")
    assert refused.returncode == 2  # there is no option that takes a secret
    bad = sv(env, "accounts", "connect", "--gateway", "razorpay", "--account-id", "not-an-account", "--platform",
             stdin="{}")
    assert bad.returncode == 2
    assert "not a razorpay account id" in bad.stdout
