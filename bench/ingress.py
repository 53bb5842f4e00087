"""Ingress: signed Razorpay `payment.captured` webhooks posted over loopback to `studiovault ingress`.

Three phases, each on a fresh copy of one seeded database and its own queue:
1. fixed rate (500/s): accepted/s and p50/p99 response time;
2. saturation (closed loop, 32 connections): accepted/s and p50/p99;
3. end to end at 50% of the saturation rate with one worker running: inbox `created_at` (when the
   ingress recorded the webhook) to `applied_at` (when the worker's unit of work ran), p50/p99/max.
The load generator (`bench.loadgen`) is its own process.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.apply import WORKER, require_payments
from bench.core import NotAvailable, Run, percentile
from bench.payments_data import BENCH_ACCOUNT, seed_invoices, write_webhooks
from bench.procs import PYTHON, drain_time, log_tail, peak_rss_mb, pipeline_env, process
from bench.profile import profile_pid
from store.migrate import migrate
from store.sqlite import SqliteDatabase

INGRESS = [PYTHON, "-m", "cli", "ingress"]
FIXED_RATE = 500.0
CONNECTIONS = 32
MAX_RATE_PLANNED = 3_000  # webhooks prepared per second of each phase


def _require_ingress() -> None:
    try:
        from ingress.app import create_app  # noqa: F401, PLC0415
    except ImportError as exc:
        raise NotAvailable(f"the ingress (ingress/app.py) is not importable: {exc}") from exc


async def _template(run: Run, invoices: int, secret: str, key: str, folder: str = "ingress") -> Path:
    """Invoices of one studio, whose Razorpay account (BENCH_ACCOUNT) signs every webhook, in a new file
    `<folder>/template.db` (each scenario its own: `latency` runs after `ingress` in one run)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from events.ids import new_id  # noqa: PLC0415
    from gateways.accounts import AccountStore, Credentials  # noqa: PLC0415
    from gateways.secretbox import FernetBox  # noqa: PLC0415

    path = run.subdir(folder) / "template.db"
    db = await SqliteDatabase.open(path)
    try:
        await migrate(db)
        refs = await seed_invoices(db, invoices, orgs=1)
        account = await AccountStore(db, FernetBox([key])).connect(
            gateway="razorpay", account_ref=BENCH_ACCOUNT, org_id=refs[0].org_id, credentials=Credentials((secret,)),
            now=datetime.now(UTC), account_id=new_id("gwa"))
    finally:
        await db.close()
    run.extra["_ingress_refs"] = refs
    run.extra["_ingress_path"] = account.webhook_path
    return path


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the ingress exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the ingress did not answer /healthz within {timeout:.0f} s:\n{log_tail(log)}")


async def _loadgen(port: int, webhooks: Path, mode: str, *, rate: float, duration: float,
                   path: str) -> dict[str, Any]:
    argv = [PYTHON, "-m", "bench.loadgen", "--port", str(port), "--requests", str(webhooks), "--mode", mode,
            "--rate", str(rate), "--duration", str(duration), "--connections", str(CONNECTIONS), "--path", path]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=duration + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed ({proc.returncode}): {err.decode()[-1500:]}")
    result: dict[str, Any] = json.loads(out)
    return result


@dataclass
class Webhooks:
    """A scenario's signed webhooks: the seeded template database they pay invoices of, the file of
    signed requests, the accounts' encryption key, and the account's webhook path."""

    template: Path
    requests: Path
    key: str
    path: str


async def signed_webhooks(run: Run, scenario: str, count: int) -> Webhooks:
    """`count` invoices seeded in `<scenario>/template.db` and a correctly signed Razorpay capture for each."""
    from gateways.secretbox import new_key  # noqa: PLC0415

    secret, key = secrets.token_hex(16), new_key()
    run.log(f"{scenario}: seeding {count} invoices and signing {count} payment.captured webhooks")
    template = await _template(run, count, secret, key, folder=scenario)
    requests = run.subdir(scenario) / "webhooks.jsonl"
    write_webhooks(str(requests), run.extra.pop("_ingress_refs"), 118_000, secret)
    return Webhooks(template, requests, key, run.extra["_ingress_path"])


@dataclass
class Phase:
    result: dict[str, Any]  # the load generator's figures
    db_path: Path
    worker_log: Path  # written only with a worker


async def run_phase(run: Run, scenario: str, name: str, hooks: Webhooks, *, mode: str, rate: float,
                    seconds: float, with_worker: bool) -> Phase:
    """One load phase on a fresh copy of the template: an ingress (and, `with_worker`, one worker that
    drains the queue before the phase ends), loaded by `bench.loadgen` at `rate` (or saturated)."""
    from tests.support.redis_server import free_port  # noqa: PLC0415

    db_path = run.subdir(f"{scenario}-{name}") / "studiovault.db"
    shutil.copy(hooks.template, db_path)
    queue, port = f"bench:{scenario}:{name}", free_port()
    env = pipeline_env(f"sqlite:///{db_path}", run.redis_url, queue,
                       SV_ACCOUNTS_ENCRYPTION_KEYS=json.dumps([hooks.key]), SV_INGRESS_PORT=str(port))
    logs = run.subdir("logs")
    ingress_log, worker_log = logs / f"ingress-{scenario}-{name}.log", logs / f"worker-{scenario}-{name}.log"
    with process([*INGRESS, "--port", str(port)], env, ingress_log) as ingress:
        _wait_healthy(port, ingress, ingress_log)
        if with_worker:
            with process(WORKER, env, worker_log) as worker:
                await asyncio.sleep(1.5)  # the worker's start-up (imports, connections) before the load
                result = await _loadgen(port, hooks.requests, mode, rate=rate, duration=seconds, path=hooks.path)
                redis = Redis.from_url(run.redis_url)
                try:
                    await drain_time(redis, queue, 1 << 30, [worker], within=max(120.0, seconds * 10))
                finally:
                    await redis.aclose()
                await asyncio.sleep(0.2)  # the last event_applied line reaches its file
                run.note_rss("worker", peak_rss_mb(worker.pid))
        else:
            profiling = asyncio.create_task(profile_pid(run, ingress.pid, seconds - 0.5, "ingress")) \
                if run.profile and mode == "saturate" else None
            result = await _loadgen(port, hooks.requests, mode, rate=rate, duration=seconds, path=hooks.path)
            if profiling is not None:
                await profiling
        run.note_rss("ingress", peak_rss_mb(ingress.pid))
    return Phase(result, db_path, worker_log)


async def _end_to_end(db_path: Path) -> tuple[list[float], dict[str, int]]:
    db = await SqliteDatabase.open(db_path)
    try:
        rows = await db.query("SELECT applied_at - created_at AS ms FROM event_inbox WHERE status = 'applied'")
        statuses = await db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status")
    finally:
        await db.close()
    return [float(r["ms"]) for r in rows], {str(r["status"]): int(r["n"]) for r in statuses}


async def run_ingress(run: Run) -> None:
    require_payments()
    _require_ingress()
    duration = run.sizes.ingress_seconds
    hooks = await signed_webhooks(run, "ingress", int(MAX_RATE_PLANNED * duration))
    phases = run.extra.setdefault("ingress_phases", {})

    run.log(f"ingress: fixed rate {FIXED_RATE:.0f}/s for {duration:.0f} s")
    fixed = phases["fixed"] = (await run_phase(run, "ingress", "fixed", hooks, mode="fixed", rate=FIXED_RATE,
                                               seconds=duration, with_worker=False)).result
    run.record("ingress.fixed_accepted", f"ingress at {FIXED_RATE:.0f}/s: accepted", fixed["ok_per_s"], "req/s",
               f"{fixed['ok']} of {fixed['sent']} 2xx")
    run.record("ingress.fixed_p50_ms", f"ingress at {FIXED_RATE:.0f}/s: p50 response", fixed["p50_ms"], "ms")
    run.record("ingress.fixed_p99_ms", f"ingress at {FIXED_RATE:.0f}/s: p99 response", fixed["p99_ms"], "ms")

    run.log(f"ingress: saturation, {CONNECTIONS} connections, closed loop, {duration:.0f} s")
    sat = phases["saturation"] = (await run_phase(run, "ingress", "saturation", hooks, mode="saturate", rate=0,
                                                  seconds=duration, with_worker=False)).result
    run.record("ingress.saturation_accepted", "ingress at saturation: accepted", sat["ok_per_s"], "req/s",
               f"{sat['ok']} of {sat['sent']} 2xx")
    run.record("ingress.saturation_p50_ms", "ingress at saturation: p50 response", sat["p50_ms"], "ms")
    run.record("ingress.saturation_p99_ms", "ingress at saturation: p99 response", sat["p99_ms"], "ms")

    half = max(10.0, sat["ok_per_s"] / 2)
    run.log(f"ingress: end to end at {half:.0f}/s (50% of saturation) with one worker")
    phase = await run_phase(run, "ingress", "e2e", hooks, mode="fixed", rate=half, seconds=duration,
                            with_worker=True)
    e2e = phases["e2e"] = phase.result
    latencies, statuses = await _end_to_end(phase.db_path)
    run.extra["e2e_inbox"] = statuses
    note = f"{len(latencies)} events at {half:.0f}/s; created_at → applied_at (ms clock)"
    run.record("e2e.rate", "end to end: offered rate (50% of saturation)", half, "req/s",
               f"ingress p99 {e2e['p99_ms']} ms")
    where = "50% of ingress saturation (not of capacity: see latency)"
    run.record("e2e.p50_ms", f"end to end p50, {where}", percentile(latencies, 50), "ms", note)
    run.record("e2e.p99_ms", f"end to end p99, {where}", percentile(latencies, 99), "ms")
    run.record("e2e.max_ms", f"end to end max, {where}", max(latencies) if latencies else None, "ms")
