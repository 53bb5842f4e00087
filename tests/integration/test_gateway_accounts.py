"""Gateway accounts: credentials encrypted at rest (Fernet, key rotation), never shown; the ingress's cached
directory (one database read and decryption per key per TTL), with its cost measured."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from gateways.accounts import AccountStore, Credentials, UndecryptableCredentials
from gateways.directory import AccountDirectory
from gateways.secretbox import FernetBox, new_key
from store import ConstraintViolation, Database
from store.sqlite import SqliteDatabase
from tests.support.factories import make_tenant
from tests.support.gateway import TEST_ENCRYPTION_KEY, account_store, connect_account

SECRET = "rzp-webhook-secret-at-rest"


async def test_credentials_are_encrypted_at_rest_and_never_in_a_repr(db: Database) -> None:
    t = await make_tenant(db)
    account = await connect_account(db, t.org_id, secrets=(SECRET,), api_key_id="rzp_test_k", api_key_secret="ks_1")
    (raw,) = await db.query("SELECT credentials FROM gateway_accounts WHERE id = ?", (account.id,))
    assert SECRET not in raw["credentials"]
    assert "ks_1" not in raw["credentials"]
    assert account.credentials.webhook_secrets == (SECRET,)
    for shown in (repr(account), str(account), repr(account.credentials), str(account.credentials)):
        assert SECRET not in shown
        assert "ks_1" not in shown
    with pytest.raises(UndecryptableCredentials):
        await AccountStore(db, FernetBox([new_key()])).get(account.id)


async def test_a_new_key_is_prepended_then_rekey_moves_every_row_to_it(db: Database) -> None:
    t = await make_tenant(db)
    account = await connect_account(db, t.org_id, secrets=(SECRET,))
    newer = new_key()
    rotated = AccountStore(db, FernetBox([newer, TEST_ENCRYPTION_KEY]))
    assert (await rotated.get(account.id)).credentials.webhook_secrets == (SECRET,)  # old rows still read
    assert await rotated.rekey() == 1
    only_new = AccountStore(db, FernetBox([newer]))
    assert (await only_new.get(account.id)).credentials.webhook_secrets == (SECRET,)
    with pytest.raises(UndecryptableCredentials):
        await account_store(db).get(account.id)  # the old key alone no longer reads it


async def test_one_active_row_per_gateway_account_and_one_platform_account_per_gateway(db: Database) -> None:
    a, b = await make_tenant(db), await make_tenant(db)
    first = await connect_account(db, a.org_id, ref="acc_Same0000000001")
    with pytest.raises(ConstraintViolation):
        await connect_account(db, b.org_id, ref="acc_Same0000000001")
    await connect_account(db, None, ref="acc_Platform000001")
    with pytest.raises(ConstraintViolation):
        await connect_account(db, None, ref="acc_Platform000002")
    gone = await account_store(db).disconnect(first.id, datetime.now(UTC))
    assert (gone.status, gone.credentials) == ("disconnected", Credentials())
    assert await account_store(db).by_endpoint_key(first.endpoint_key) is None
    await connect_account(db, b.org_id, ref="acc_Same0000000001")  # reconnected, by another org


async def test_the_directory_reads_and_decrypts_once_per_key_per_ttl(sqlite_db: SqliteDatabase) -> None:
    t = await make_tenant(sqlite_db)
    account = await connect_account(sqlite_db, t.org_id)
    clock = [0.0]
    directory = AccountDirectory(account_store(sqlite_db), ttl_s=5.0, clock=lambda: clock[0])
    for _ in range(200):
        assert (await directory.by_endpoint_key(account.endpoint_key)) == account
        assert await directory.by_endpoint_key("unknown-key") is None
    assert directory.loads == 2  # one per key (misses are cached too)
    clock[0] = 5.1
    await account_store(sqlite_db).rotate_webhook_secret(account.id, "new-secret", datetime.now(UTC))
    fresh = await directory.by_endpoint_key(account.endpoint_key)
    assert fresh is not None
    assert fresh.credentials.webhook_secrets[0] == "new-secret"
    assert directory.loads == 3


async def test_measure_what_the_cache_saves(sqlite_db: SqliteDatabase) -> None:
    """Figures for the report: a lookup through the database with decryption vs a cached one."""
    t = await make_tenant(sqlite_db)
    account = await connect_account(sqlite_db, t.org_id)
    store = account_store(sqlite_db)
    box = FernetBox([TEST_ENCRYPTION_KEY])
    token = box.encrypt(account.credentials.to_json())
    n = 300
    started = time.perf_counter()
    for _ in range(n):
        box.decrypt(token)
    decrypt_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        await store.by_endpoint_key(account.endpoint_key)
    uncached_us = (time.perf_counter() - started) / n * 1e6
    directory = AccountDirectory(store, ttl_s=60)
    await directory.by_endpoint_key(account.endpoint_key)
    started = time.perf_counter()
    for _ in range(n):
        await directory.by_endpoint_key(account.endpoint_key)
    cached_us = (time.perf_counter() - started) / n * 1e6
    print(f"account lookup: decrypt {decrypt_us:.1f} us, database + decrypt {uncached_us:.1f} us,"  # noqa: T201
          f" cached {cached_us:.2f} us")
    assert cached_us < uncached_us
