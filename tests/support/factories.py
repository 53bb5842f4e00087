"""Factories that insert a tenant's rows through the `Database` port (the same path the app uses)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from events.ids import new_id
from store import Database, Statement

NOW_MS = 1_790_000_000_000  # 2026-09-21T13:46:40Z, a fixed clock for rows the tests create


@dataclass
class Tenant:
    org_id: str
    branch_id: str
    client_id: str
    project_id: str
    invoice_id: str
    extra: dict[str, Any] = field(default_factory=dict)


async def make_tenant(
    db: Database,
    *,
    amount_total: float = 1180.0,
    currency: str = "INR",
    project_status: str = "inquiry",
    invoice_type: str = "booking",
    invoice_status: str = "issued",
    due_at: int | None = NOW_MS + 7 * 86_400_000,
    org_config: dict[str, Any] | None = None,
    state_code: str = "KA",
    client_email: str | None = "asha@example.in",
    client_name: str = "Asha Rao",
) -> Tenant:
    """An org with one branch, client, project and invoice; returns their IDs."""
    t = Tenant(new_id("org"), new_id("brn"), new_id("cli"), new_id("prj"), new_id("inv"))
    config = {"currency": currency, **(org_config or {})}
    profile = {"email": client_email} if client_email else {}
    await db.batch([
        Statement(
            "INSERT INTO organizations (id, name, config_json, plan_tier, created_at) VALUES (?, ?, ?, ?, ?)",
            (t.org_id, "Lumen Studios", json.dumps(config), "paid_org", NOW_MS),
        ),
        Statement(
            "INSERT INTO branches (id, org_id, name, address_json, tax_json, invoice_prefix, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (t.branch_id, t.org_id, "Bengaluru", json.dumps({"state_code": state_code}),
             json.dumps({"gstin": "29ABCDE1234F1Z5", "state_code": state_code}), "BLR-", NOW_MS),
        ),
        Statement(
            "INSERT INTO clients (id, branch_id, name, phone, profile_json, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (t.client_id, t.branch_id, client_name, "+919800000001", json.dumps(profile), NOW_MS),
        ),
        Statement(
            "INSERT INTO projects (id, branch_id, client_id, status, created_at) VALUES (?, ?, ?, ?, ?)",
            (t.project_id, t.branch_id, t.client_id, project_status, NOW_MS),
        ),
        Statement(
            "INSERT INTO invoices (id, branch_id, project_id, invoice_type, amount_total, status, issued_at, due_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (t.invoice_id, t.branch_id, t.project_id, invoice_type, amount_total, invoice_status, NOW_MS, due_at),
        ),
    ])
    return t
