"""`python -m bench [--quick] [--only NAME ...] [--out bench/results/latest.json] [--profile]`

Runs the benchmark scenarios in order against a redis-server this run starts on a free loopback
port, prints a table of every figure with its same-run baselines, ratios and targets, and writes
JSON. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console

from bench.core import FULL, QUICK, NotAvailable, Run, route_logs_to
from bench.machine import machine_info
from bench.procs import ROOT
from bench.report import add_derived, evaluate, print_tables, write_json


async def _ceilings(run: Run) -> None:
    from bench.ceilings import run_ceilings  # noqa: PLC0415 - each scenario imports what it needs lazily

    await run_ceilings(run)


async def _apply(run: Run) -> None:
    from bench.apply import run_apply  # noqa: PLC0415

    await run_apply(run)


async def _d1(run: Run) -> None:
    from bench.d1 import run_d1  # noqa: PLC0415

    await run_d1(run)


async def _ingress(run: Run) -> None:
    from bench.ingress import run_ingress  # noqa: PLC0415

    await run_ingress(run)


async def _latency(run: Run) -> None:
    from bench.latency import run_latency  # noqa: PLC0415

    await run_latency(run)


async def _scaleout(run: Run) -> None:
    from bench.scaleout import run_scaleout  # noqa: PLC0415

    await run_scaleout(run)


async def _scrape(run: Run) -> None:
    from bench.scrape import run_scrape  # noqa: PLC0415

    await run_scrape(run)


async def _billing(run: Run) -> None:
    from bench.billing import run_billing  # noqa: PLC0415

    await run_billing(run)


async def _pickup(run: Run) -> None:
    from bench.pickup import run_pickup  # noqa: PLC0415

    await run_pickup(run)


SCENARIOS: dict[str, tuple[str, Callable[[Run], Awaitable[None]]]] = {
    "ceilings": ("arq no-op (tuned and default), Redis, SQLite batch commits", _ceilings),
    "apply": ("payment-captured events drained by 1 and 2 worker processes on SQLite", _apply),
    "d1": ("the apply path on the D1 bridge under miniflare: events/s, HTTP requests per event", _d1),
    "ingress": ("signed Razorpay webhooks: fixed rate, saturation, end-to-end latency", _ingress),
    "latency": ("pipeline capacity (ingress + 1 worker), then end to end at 25/50/75 % of it and 100/s",
                _latency),
    "scaleout": ("1, 2, 4 worker processes on SQLite and on D1 behind a 0/25/100 ms-each-way proxy", _scaleout),
    "billing": ("closing a billing period for many orgs with media and notifications", _billing),
    "pickup": ("outbox rows written straight into D1/SQLite: commit → enqueued/applied, with 100k more rows",
               _pickup),
    "scrape": ("the apply benchmark with and without both /metrics scraped every second", _scrape),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: " + "; ".join(f"{name}: {what}" for name, (what, _) in SCENARIOS.items()),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole suite in a few minutes")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), metavar="NAME",
                        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json",
                        help="where to write the JSON results (default: bench/results/latest.json)")
    parser.add_argument("--profile", action="store_true",
                        help="also sample the worker with py-spy during an extra apply run (top frames in the JSON)")
    return parser.parse_args(argv)


async def run_all(run: Run, names: list[str]) -> None:
    for name in names:
        _, scenario = SCENARIOS[name]
        run.scenario = name
        run.log(f"[bold cyan]── {name}[/bold cyan]")
        try:
            await scenario(run)
        except NotAvailable as exc:
            run.unavailable[name] = str(exc)
            run.log(f"[yellow]{name}: not available[/yellow] — {exc}")
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the others' figures
            run.unavailable[name] = f"failed: {type(exc).__name__}: {exc}"
            run.log(f"[red]{name} failed[/red]: {exc}\n{traceback.format_exc(limit=6)}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console()
    from tests.support.redis_server import redis_server  # noqa: PLC0415

    started = time.monotonic()
    machine = machine_info()
    console.print(f"[bold]StudioVault benchmarks[/bold] ({'quick' if args.quick else 'full'}) on "
                  f"{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
                  f"Redis {machine['redis']}, commit {machine['git_commit']}")
    with tempfile.TemporaryDirectory(prefix="sv-bench-") as workdir, redis_server() as redis_url:
        run = Run(quick=args.quick, workdir=Path(workdir), redis_url=redis_url, console=console,
                  sizes=QUICK if args.quick else FULL, profile=args.profile)
        route_logs_to(run.subdir("logs") / "bench-process.log")
        asyncio.run(run_all(run, args.only or list(SCENARIOS)))
    add_derived(run)
    targets = evaluate(run)
    wall = time.monotonic() - started
    print_tables(run, targets, console)
    write_json(args.out, run, machine, targets, wall)
    console.print(f"wall time {wall:.1f} s; results in {args.out}")


if __name__ == "__main__":
    main()
