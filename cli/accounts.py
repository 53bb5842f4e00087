"""`studiovault accounts ...`: each org's connected gateway accounts, and the platform's own.

Secrets are read from a file (`--secrets-file`) or standard input, never from the command line (where
`ps` and shell history would keep them), and never printed: `list` shows how many secrets an account
holds, not what they are. Credentials are encrypted with the first of `SV_ACCOUNTS_ENCRYPTION_KEYS`.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bootstrap.gateways import account_store
from cli.common import console, resources, run, settings
from events.ids import new_id
from gateways.accounts import Account, AccountError, AccountStore, Credentials, GatewayName, UndecryptableCredentials
from gateways.secretbox import new_key
from store import ConstraintViolation

accounts_app = typer.Typer(help="Gateway accounts: connect, rotate secrets, disconnect, list.", no_args_is_help=True)

REFS = {"razorpay": re.compile(r"^acc_[A-Za-z0-9]{4,40}$"), "stripe": re.compile(r"^acct_[A-Za-z0-9]{4,60}$")}
SecretsFile = Annotated[Path | None, typer.Option("--secrets-file", help="Read the secrets from this file"
                                                  " instead of standard input.", exists=True, dir_okay=False)]


def _read(path: Path | None, prompt: str, *, json_doc: bool) -> Any:
    """The secret input: a file, piped standard input, or (at a terminal) a hidden prompt."""
    if path is not None:
        text = path.read_text()
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        text = typer.prompt(prompt, hide_input=True)
    if not json_doc:
        return text.strip()
    if not text.strip():
        return {}  # nothing to keep secret (a Stripe Connect account: the platform's secrets serve it)
    try:
        return json.loads(text)
    except ValueError:
        raise AccountError('the secrets must be a JSON object, e.g. {"webhook_secrets": ["..."], "api_key_id":'
                           ' "...", "api_key_secret": "..."}') from None


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(2)


async def _store_op(op: Any) -> Any:
    async with resources(need_redis=False) as res:
        store = account_store(res.db, settings().gateways)
        try:
            return await op(store)
        except (AccountError, UndecryptableCredentials) as exc:
            raise _fail(str(exc)) from None


def _describe(account: Account) -> str:
    owner = account.org_id or "the platform"
    return f"{account.id}: {account.gateway} {account.account_ref} for {owner}, webhook {account.webhook_path}"


@accounts_app.command("connect")
def connect(
    gateway: Annotated[str, typer.Option(help="razorpay or stripe.")],
    account_id: Annotated[str, typer.Option("--account-id", help="The gateway's account id: acc_... / acct_....")],
    org: Annotated[str | None, typer.Option(help="The org that owns the account.")] = None,
    platform: Annotated[bool, typer.Option("--platform", help="StudioVault's own account (overage).")] = False,
    secrets_file: SecretsFile = None,
) -> None:
    """Connect a gateway account. Secrets (JSON: webhook_secrets, connect_webhook_secrets for the Stripe
    platform, api_key_id, api_key_secret) come from --secrets-file or standard input."""
    if gateway not in REFS:
        raise _fail("--gateway must be razorpay or stripe")
    if (org is None) == (not platform):
        raise _fail("name the owner: --org ORG, or --platform for StudioVault's own account")
    if not REFS[gateway].match(account_id):
        raise _fail(f"--account-id {account_id!r} is not a {gateway} account id")
    try:
        credentials = Credentials.parse(_read(secrets_file, "secrets (JSON)", json_doc=True))
    except AccountError as exc:
        raise _fail(str(exc)) from None
    gw: GatewayName = "razorpay" if gateway == "razorpay" else "stripe"

    async def op(store: AccountStore) -> Account:
        if org is not None and not await store.db.query("SELECT id FROM organizations WHERE id = ?", (org,)):
            raise AccountError(f"no org {org}")
        try:
            return await store.connect(gateway=gw, account_ref=account_id, org_id=org, credentials=credentials,
                                       now=datetime.now(UTC), account_id=new_id("gwa"))
        except ConstraintViolation:
            raise AccountError(f"{gateway} account {account_id} (or the platform's {gateway} account) is already"
                               " connected: disconnect it first") from None

    account: Account = run(lambda: _store_op(op))
    console.print(f"connected {_describe(account)}")


@accounts_app.command("rotate-secret")
def rotate_secret(
    account: Annotated[str, typer.Argument(help="The account (gwa_...).")],
    connect_endpoint: Annotated[bool, typer.Option("--connect", help="The Stripe platform's Connect endpoint.")
                                ] = False,
    drop_old: Annotated[bool, typer.Option("--drop-old", help="Keep only the new secret.")] = False,
    secrets_file: SecretsFile = None,
) -> None:
    """Add a new webhook secret (read from --secrets-file or standard input) in front of the current ones,
    which keep verifying retries signed before the change until --drop-old."""
    secret = _read(secrets_file, "new webhook secret", json_doc=False)

    async def op(store: AccountStore) -> Account:
        return await store.rotate_webhook_secret(account, secret, datetime.now(UTC), connect=connect_endpoint,
                                                 drop_old=drop_old)

    updated: Account = run(lambda: _store_op(op))
    creds = updated.credentials
    held = len(creds.connect_webhook_secrets if connect_endpoint else creds.webhook_secrets)
    console.print(f"rotated {updated.id}: {held} secret(s) verify now; the ingress picks it up within "
                  f"{settings().gateways.accounts_cache_ttl_s:g} s")


@accounts_app.command("set-api-key")
def set_api_key(account: Annotated[str, typer.Argument(help="The account (gwa_...).")],
                secrets_file: SecretsFile = None) -> None:
    """Set the API credentials used for reconciliation (JSON: api_key_id, api_key_secret)."""
    doc = _read(secrets_file, "API credentials (JSON)", json_doc=True)
    creds = Credentials.parse(doc if isinstance(doc, dict) else {})
    if not creds.api_key_secret:
        raise _fail("api_key_secret is required")

    async def op(store: AccountStore) -> Account:
        return await store.set_api_key(account, creds.api_key_id, creds.api_key_secret or "", datetime.now(UTC))

    console.print(f"API key set on {run(lambda: _store_op(op)).id}")


@accounts_app.command("disconnect")
def disconnect(account: Annotated[str, typer.Argument(help="The account (gwa_...).")]) -> None:
    """Stop accepting its webhooks and reconciling it; its secrets are erased, its history kept."""

    async def op(store: AccountStore) -> Account:
        return await store.disconnect(account, datetime.now(UTC))

    console.print(f"disconnected {run(lambda: _store_op(op)).id}")


@accounts_app.command("list")
def list_accounts(org: Annotated[str | None, typer.Option(help="Only this org's.")] = None,
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The accounts, with their webhook URL path and how many secrets they hold (never the secrets)."""

    async def op(store: AccountStore) -> list[Account]:
        return await store.list(org)

    rows = [{"id": a.id, "gateway": a.gateway, "role": a.role, "org_id": a.org_id, "account": a.account_ref,
             "status": a.status, "webhook": a.webhook_path, "webhook_secrets": len(a.credentials.webhook_secrets),
             "connect_webhook_secrets": len(a.credentials.connect_webhook_secrets),
             "api_key": bool(a.credentials.api_key_secret), "reconciled_until": a.reconciled_until}
            for a in run(lambda: _store_op(op))]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title="gateway accounts")
    columns = ("id", "gateway", "role", "org_id", "account", "status", "webhook", "webhook_secrets", "api_key",
               "reconciled_until")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)


@accounts_app.command("rekey")
def rekey() -> None:
    """Re-encrypt every account under the first SV_ACCOUNTS_ENCRYPTION_KEYS key (after prepending a new one)."""

    async def op(store: AccountStore) -> int:
        return await store.rekey()

    console.print(f"re-encrypted {run(lambda: _store_op(op))} account(s) with the first key")


@accounts_app.command("new-key")
def make_key() -> None:
    """Print a new encryption key for SV_ACCOUNTS_ENCRYPTION_KEYS (it is shown once; store it as a secret)."""
    sys.stdout.write(new_key() + "\n")
