"""`studiovault storage`: bytes stored per org, branch and project, from `media_objects` (readmodels.storage)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, resources, run
from readmodels.storage import ProjectUsage, Usage, total, usage_by_project


def human(n: int) -> str:
    """1536 → '1.5 KiB' (binary units, as storage is billed)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def usage_table(rows: list[ProjectUsage]) -> Table:
    """One line per project, a subtotal line per branch and per org, and a grand total."""
    table = Table(title="storage used (media_objects)")
    for column in ("org", "branch", "project", "objects", "bytes", "size"):
        table.add_column(column, justify="right" if column in ("objects", "bytes", "size") else "left",
                         overflow="fold")

    def line(org: str, branch: str, project: str, usage: Usage, style: str | None = None) -> None:
        table.add_row(org, branch, project, str(usage.objects), str(usage.bytes), human(usage.bytes), style=style)

    for org in sorted({r.org_id for r in rows}):
        in_org = [r for r in rows if r.org_id == org]
        for branch in sorted({r.branch_id for r in in_org}):
            in_branch = [r for r in in_org if r.branch_id == branch]
            for r in in_branch:
                line(org, branch, r.project_id, r.usage)
            line(org, branch, "(branch total)", total(in_branch), "bold")
        line(org, "(org total)", "", total(in_org), "bold cyan")
    line("(all)", "", "", total(rows), "bold magenta")
    return table


def storage(
    org: Annotated[str | None, typer.Option(help="Only this org (org_<uuidv7>); default: every org.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
) -> None:
    """Storage used per org, branch and project (the sum of media_objects.size_bytes), with subtotals."""
    async def go() -> list[ProjectUsage]:
        async with resources(need_redis=False) as res:
            return await usage_by_project(res.db, org)

    rows = run(go)
    if as_json:
        console.print_json(json.dumps([asdict(r) for r in rows]))
        return
    console.print(usage_table(rows))
