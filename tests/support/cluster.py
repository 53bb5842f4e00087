"""A pipeline of real processes for fault tests: an ingress and worker processes (`studiovault`), their own
restartable redis-server, and a database (the SQLite file, or D1 through the bridge under miniflare).

Deliveries are Razorpay captures signed by each studio's own connected account, sent the way a gateway
sends them: retried on a 5xx or a
refused connection until answered 2xx. `settled()` waits until every accepted event left `pending`;
`exactly_once()` checks the ledger: one transaction per payment, money per client as delivered.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from events.ids import new_id
from gateways.accounts import Account
from store import Database
from tests.support.factories import Tenant, make_tenant
from tests.support.gateway import RAZORPAY_SECRET, TEST_ENCRYPTION_KEY, connect_account, rzp_captured, sign_razorpay
from tests.support.processes import CLI, ROOT, json_logs, pipeline_env
from tests.support.redis_server import RedisProcess, free_port

AMOUNT = 100  # paise per capture: many captures per invoice, each its own payment


@dataclass
class Capture:
    tenant: Tenant
    account: Account  # the studio's own Razorpay account, which signs its captures
    payment_id: str
    event_id: str

    def signed(self) -> tuple[bytes, dict[str, str]]:
        doc = rzp_captured(self.tenant.invoice_id, AMOUNT, self.payment_id, account_id=self.account.account_ref,
                           notes={"org_id": self.tenant.org_id, "branch_id": self.tenant.branch_id})
        return sign_razorpay(doc, RAZORPAY_SECRET, event_id=self.event_id)


@dataclass
class Cluster:
    db: Database
    database_url: str
    redis: RedisProcess
    workdir: Path
    workers: int = 2
    env_overrides: dict[str, str] = field(default_factory=dict)
    tenants: list[Tenant] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)  # org id → its Razorpay account
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    delivered: list[Capture] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return pipeline_env(self.database_url, self.redis.url, SV_ACCOUNTS_ENCRYPTION_KEYS=f'["{TEST_ENCRYPTION_KEY}"]',
                            **self.env_overrides)

    async def start(self, tenants: int = 6) -> None:
        # Active projects: captures move money only (no booking_confirmed follow-ups to deliver).
        self.tenants = [await make_tenant(self.db, amount_total=10_000.0, project_status="active")
                        for _ in range(tenants)]
        for tenant in self.tenants:  # each studio is paid into its own Razorpay account
            self.accounts[tenant.org_id] = await connect_account(
                self.db, tenant.org_id, ref=f"acc_{tenant.org_id[-12:].replace('-', '')}")
        self.redis.start()
        self.spawn("ingress", "ingress", "--port", str(self.port))
        for n in range(self.workers):
            self.spawn(f"worker-{n}", "worker")
        await self.wait_ready()

    def spawn(self, name: str, *args: str) -> None:
        env = {**self.env, "SV_HEARTBEAT_FILE": str(self.workdir / f"{name}.heartbeat")}
        with (self.workdir / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen([*CLI, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                                stderr=log)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait(timeout=10)

    async def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200 and all(
                            "worker_ready" in self.events(name) for name in self.procs if name.startswith("worker")):
                        return
                except httpx.HTTPError:
                    pass
                self.assert_alive()
                if time.monotonic() > deadline:
                    raise AssertionError(f"the cluster did not start in {within} s:\n{self.tails()}")
                await asyncio.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_captures(self, count: int) -> list[Capture]:
        tenants = [self.tenants[i % len(self.tenants)] for i in range(count)]
        made = [Capture(t, self.accounts[t.org_id], f"pay_{new_id('evt')[-14:].replace('-', '')}",
                        f"Ev{new_id('evt')[-12:]}") for t in tenants]
        self.delivered.extend(made)
        return made

    async def deliver(self, http: httpx.AsyncClient, capture: Capture, within: float = 120.0) -> int:
        """Send until answered 2xx, as a gateway retries (5xx, refused, timed out); return the tries."""
        body, headers = capture.signed()
        deadline = time.monotonic() + within
        for tries in range(1, 10_000):
            try:
                response = await http.post(f"{self.url}{capture.account.webhook_path}", content=body, headers=headers)
                if response.status_code < 300:
                    return tries
                assert response.status_code >= 500, response.text  # a 4xx would be a bug here
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{capture.event_id} not accepted in {within} s:\n{self.tails()}")
            await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def pending(self) -> int:
        rows = await self.db.query("SELECT count(*) AS n FROM event_inbox WHERE status = 'pending'")
        return int(rows[0]["n"])

    async def pending_at_least(self, count: int) -> bool:
        return await self.pending() >= count

    async def until(self, condition: Callable[[], Awaitable[bool]], within: float) -> None:
        deadline = time.monotonic() + within
        while not await condition():
            assert time.monotonic() < deadline, f"not true within {within} s:\n{self.tails()}"
            await asyncio.sleep(0.01)

    async def settled(self, within: float) -> float:
        """Seconds until no accepted event is pending (AssertionError with the logs if not within)."""
        started = time.monotonic()
        while await self.pending():
            self.assert_alive()
            if time.monotonic() - started > within:
                raise AssertionError(f"{await self.pending()} events still pending after {within} s:\n{self.tails()}")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def exactly_once(self) -> None:
        """Every delivered capture recorded once (one transaction, one ledger row), nothing dead or doubled."""
        payments = {c.payment_id for c in self.delivered}
        statuses = {r["status"]: int(r["n"]) for r in await self.db.query(
            "SELECT status, count(*) AS n FROM event_inbox GROUP BY status")}
        assert statuses == {"applied": len(payments)}, statuses
        rows = await self.db.query("SELECT gateway_payment_id AS p, count(*) AS n FROM transactions GROUP BY p")
        assert {r["p"]: int(r["n"]) for r in rows} == dict.fromkeys(payments, 1)
        for tenant in self.tenants:
            expected = sum(AMOUNT for c in self.delivered if c.tenant is tenant) / 100
            spend = await self.db.query("SELECT total_spend FROM clients WHERE id = ?", (tenant.client_id,))
            assert float(spend[0]["total_spend"]) == expected

    def events(self, name: str) -> list[str]:
        path = self.workdir / f"{name}.log"
        return [str(line.get("event")) for line in json_logs(path)] if path.exists() else []

    def assert_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"processes exited: {dead}\n{self.tails()}"

    def tails(self) -> str:
        return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-15:])
                         for path in sorted(self.workdir.glob("*.log")))

    def stop(self) -> dict[str, int]:
        """SIGTERM everything; return each process's exit code."""
        codes = {}
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self.redis.stop()
        return codes


def worker_lines(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return json_logs(cluster.workdir / f"{name}.log")
