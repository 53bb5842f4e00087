"""`studiovault demo seed | pay`: a first run that shows something — an invoice becoming paid — without SQL.

`seed` creates a demo studio (org, branch, client, a project in inquiry, a ₹1,180 booking invoice) and
connects its own Razorpay account with a fresh webhook secret; `pay` sends the correctly signed
`payment.captured` webhook Razorpay would send to the running ingress and watches the invoice become
paid and the project active. For `./dev run`: `./dev sv demo seed`, then `./dev sv demo pay`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer

from bootstrap.gateways import account_store
from cli.common import console, fail, resources, run, settings
from core.clock import epoch_ms
from events.ids import new_id
from gateways.accounts import Account, Credentials
from store import Database, Statement

demo_app = typer.Typer(help="Demo data for a first run: watch an invoice become paid.", no_args_is_help=True)
DEMO_ORG_NAME = "Demo Studio (studiovault demo)"
AMOUNT_PAISE = 118_000


@demo_app.command("seed")
def seed() -> None:
    """Create a demo studio with a ₹1,180 booking invoice and connect its Razorpay account."""

    async def go() -> dict[str, str]:
        async with resources(need_redis=False) as res:
            ids = await _insert_demo_studio(res.db)
            store = account_store(res.db, settings().gateways)
            account = await store.connect(
                gateway="razorpay", account_ref=f"acc_demo{secrets.token_hex(5)}", org_id=ids["org"],
                credentials=Credentials(webhook_secrets=(secrets.token_urlsafe(24),)), now=datetime.now(UTC),
                account_id=new_id("gwa"))
            return {**ids, "webhook": account.webhook_path}

    ids = run(go)
    console.print(f"demo studio {ids['org']}: invoice {ids['invoice']} (₹1,180.00, issued), project {ids['project']}"
                  f" (inquiry); Razorpay webhooks at {ids['webhook']}")
    console.print("now, with the pipeline running (./dev run): [bold]./dev sv demo pay[/bold]")


@demo_app.command("pay")
def pay(
    url: Annotated[str | None, typer.Option(help="The ingress (default: http://127.0.0.1:SV_INGRESS_PORT).")] = None,
) -> None:
    """Send the signed payment.captured webhook for the demo invoice and watch it become paid."""
    base = url or f"http://127.0.0.1:{settings().ingress.ingress_port}"

    async def go() -> None:
        async with resources(need_redis=False) as res:
            found = await _demo(res.db)
            if found is None:
                fail("no demo studio yet: run `studiovault demo seed` first")
            invoice, org, branch = found
            store = account_store(res.db, settings().gateways)
            (account,) = [a for a in await store.list(org) if a.gateway == "razorpay" and a.active]
            body, headers = _signed_capture(account, account.credentials.webhook_secrets[0], invoice, org, branch)
            console.print(f"POST {base}{account.webhook_path}, signed as Razorpay signs (X-Razorpay-Signature)")
            async with httpx.AsyncClient(timeout=10) as http:
                try:
                    answer = await http.post(f"{base}{account.webhook_path}", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    fail(f"the ingress at {base} does not answer ({type(exc).__name__}): is ./dev run running?")
            console.print(f"ingress answered {answer.status_code}: {answer.text}")
            if answer.status_code >= 300:
                raise typer.Exit(1)
            await _watch(res.db, invoice)

    run(go)


def _signed_capture(account: Account, secret: str, invoice: str, org: str, branch: str) -> tuple[bytes, dict[str, str]]:
    payment_id = f"pay_demo{secrets.token_hex(5)}"
    entity = {"id": payment_id, "entity": "payment", "amount": AMOUNT_PAISE, "currency": "INR", "status": "captured",
              "captured": True, "method": "upi", "notes": {"invoice_id": invoice, "org_id": org, "branch_id": branch},
              "created_at": int(time.time())}
    doc = {"entity": "event", "account_id": account.account_ref, "event": "payment.captured",
           "contains": ["payment"], "payload": {"payment": {"entity": entity}}, "created_at": int(time.time())}
    body = json.dumps(doc).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-razorpay-signature": signature,
                  "x-razorpay-event-id": f"demo{secrets.token_hex(8)}"}


async def _watch(db: Database, invoice: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rows = await db.query("SELECT i.status, p.status AS project FROM invoices i JOIN projects p"
                              " ON p.id = i.project_id WHERE i.id = ?", (invoice,))
        if rows and rows[0]["status"] == "paid":
            console.print(f"invoice {invoice}: [green]paid[/green]; project {rows[0]['project']}"
                          " (a booking_confirmed notification was published: see `studiovault status`)")
            return
        await asyncio.sleep(0.2)
    fail(f"invoice {invoice} is not paid after {within:.0f} s: is a worker running? see `studiovault status`")


async def _demo(db: Database) -> tuple[str, str, str] | None:
    rows = await db.query("SELECT i.id AS invoice, b.org_id, b.id AS branch FROM invoices i JOIN branches b"
                          " ON b.id = i.branch_id JOIN organizations o ON o.id = b.org_id WHERE o.name = ?"
                          " ORDER BY i.id DESC LIMIT 1", (DEMO_ORG_NAME,))
    return (str(rows[0]["invoice"]), str(rows[0]["org_id"]), str(rows[0]["branch"])) if rows else None


async def _insert_demo_studio(db: Database) -> dict[str, str]:
    ids = {name: new_id(prefix) for name, prefix in
           (("org", "org"), ("branch", "brn"), ("client", "cli"), ("project", "prj"), ("invoice", "inv"))}
    now = datetime.now(UTC)
    at, due = epoch_ms(now), epoch_ms(now + timedelta(days=7))
    config: dict[str, Any] = {"currency": "INR", "notifications": {"quiet_hours": None}}
    await db.batch([
        Statement("INSERT INTO organizations (id, name, config_json, plan_tier, created_at) VALUES (?, ?, ?, ?, ?)",
                  (ids["org"], DEMO_ORG_NAME, json.dumps(config), "free_org", at)),
        Statement("INSERT INTO branches (id, org_id, name, address_json, tax_json, invoice_prefix, created_at)"
                  " VALUES (?, ?, 'Bengaluru', ?, ?, 'DEMO-', ?)",
                  (ids["branch"], ids["org"], json.dumps({"state_code": "KA", "country": "IN"}),
                   json.dumps({"gstin": "29ABCDE1234F1Z5"}), at)),
        Statement("INSERT INTO clients (id, branch_id, name, phone, profile_json, created_at)"
                  " VALUES (?, ?, 'Asha Rao', '+919800000001', ?, ?)",
                  (ids["client"], ids["branch"], json.dumps({"email": "asha@example.in"}), at)),
        Statement("INSERT INTO projects (id, branch_id, client_id, status, details_json, created_at)"
                  " VALUES (?, ?, ?, 'inquiry', ?, ?)",
                  (ids["project"], ids["branch"], ids["client"], json.dumps({"title": "Wedding, 12 Dec"}), at)),
        Statement("INSERT INTO invoices (id, branch_id, project_id, invoice_type, amount_total, status, issued_at,"
                  " due_at) VALUES (?, ?, ?, 'booking', 1180.0, 'issued', ?, ?)",
                  (ids["invoice"], ids["branch"], ids["project"], at, due)),
    ])
    return ids
