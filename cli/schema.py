"""`studiovault schema export [--check]`: the contract files producers outside Python build against.

Writes, from the pydantic models, every file in `schemas/`: one JSON Schema per event type and version,
the envelope's, the index, the fingerprints of every version ever exported, and the producer API's
OpenAPI document (`openapi.json`). `--check` writes nothing and exits 1 when any file is stale (CI).
Either way, a model whose shape changed without a `schema_version` bump is refused (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console
from events.catalog import EVENT_TYPES
from events.schema import fingerprint_conflicts, stale_schemas, write_schemas
from ingress.producer_api import OPENAPI_FILE, openapi_document

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
schema_app = typer.Typer(help="The event JSON Schemas and the producer API's OpenAPI document.", no_args_is_help=True)


@schema_app.command("export")
def export(
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a file is stale.")] = False,
    directory: Annotated[Path, typer.Option("--dir", help="Where the schema files live.")] = SCHEMAS_DIR,
) -> None:
    """Write (or check) schemas/: event schemas, envelope, index, fingerprints, openapi.json."""
    extra = {OPENAPI_FILE: openapi_document()}
    conflicts = fingerprint_conflicts(directory, EVENT_TYPES)
    for problem in conflicts:
        console.print(f"[red]version not bumped[/red]: {problem}", highlight=False, soft_wrap=True)
    if check:
        stale = stale_schemas(directory, EVENT_TYPES, extra=extra)
        for name in stale:
            console.print(f"[red]stale[/red]: {name}", highlight=False, soft_wrap=True)
        if stale:
            console.print(f"in {directory}: run `studiovault schema export` (then `cd outbox && npm run schemas`)",
                          highlight=False, soft_wrap=True)
        if stale or conflicts:
            raise typer.Exit(1)
        console.print(f"{directory}: up to date")
        return
    if conflicts:
        raise typer.Exit(1)
    changed = write_schemas(directory, EVENT_TYPES, extra=extra)
    for path in changed:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    console.print(f"{directory}: {len(changed)} file(s) changed")
