"""Schemas as the contract: the files in schemas/ are what the models say, and a model whose shape changes
without its schema file AND a schema_version bump fails (`studiovault schema export [--check]`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import Field
from typer.testing import CliRunner

from cli.main import app
from events.catalog import EVENT_TYPES, EXTERNALLY_PUBLISHABLE
from events.notifications import NotificationDue
from events.schema import (
    FINGERPRINTS_FILE,
    event_schema,
    fingerprint,
    fingerprint_conflicts,
    read_fingerprints,
    stale_schemas,
    write_schemas,
)
from handlers.routes import HANDLERS
from ingress.producer_api import OPENAPI_FILE, openapi_document

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


class NotificationDueWithColour(NotificationDue):
    """notification.due v1 with one more field: a shape change that must come with a version bump."""

    colour: str = Field("blue", max_length=20)


class NotificationDueV2(NotificationDueWithColour):
    schema_version = 2


class NotificationDueReworded(NotificationDue):
    """The same fields with another docstring: not a new shape."""


def copy_of_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    return target


def with_class(replacement: type[NotificationDue]) -> list[type]:
    return [replacement if cls is NotificationDue else cls for cls in EVENT_TYPES]


def test_the_schema_files_in_the_repository_are_current() -> None:
    extra = {OPENAPI_FILE: openapi_document()}
    assert stale_schemas(SCHEMAS, EVENT_TYPES, extra=extra) == [], "run `studiovault schema export`"
    assert fingerprint_conflicts(SCHEMAS, EVENT_TYPES) == []
    recorded = read_fingerprints(SCHEMAS)
    assert {(t, int(v)) for t, versions in recorded.items() for v in versions} >= {
        (c.event_type, c.schema_version) for c in EVENT_TYPES}


def test_every_event_type_has_a_handler_and_the_publishable_ones_are_explicit() -> None:
    assert set(EVENT_TYPES) == set(HANDLERS)
    assert {"notification.due", "media.uploaded"} <= EXTERNALLY_PUBLISHABLE
    assert not any(t.startswith(("payment.", "billing.")) for t in EXTERNALLY_PUBLISHABLE)


def test_a_v1_model_whose_shape_changed_without_a_bump_is_refused(tmp_path: Path) -> None:
    directory = copy_of_schemas(tmp_path)
    before = {p.name: p.read_text() for p in directory.rglob("*.json")}
    problems = fingerprint_conflicts(directory, with_class(NotificationDueWithColour))
    assert len(problems) == 1
    assert "notification.due v1" in problems[0]
    assert "bump its schema_version" in problems[0]
    with pytest.raises(ValueError, match=r"notification\.due v1"):
        write_schemas(directory, with_class(NotificationDueWithColour))
    assert {p.name: p.read_text() for p in directory.rglob("*.json")} == before, "nothing written"
    # The file alone does not make it right: a regenerated v1 file still conflicts with its fingerprint.
    (directory / "events" / "notification.due.v1.json").write_text(
        json.dumps(event_schema(NotificationDueWithColour)))
    assert fingerprint_conflicts(directory, with_class(NotificationDueWithColour))


def test_a_bumped_version_is_exported_and_the_old_fingerprint_is_kept(tmp_path: Path) -> None:
    directory = copy_of_schemas(tmp_path)
    v1 = read_fingerprints(directory)["notification.due"]["1"]
    classes = [*EVENT_TYPES, NotificationDueV2]
    written = {p.name for p in write_schemas(directory, classes)}
    assert {"notification.due.v2.json", FINGERPRINTS_FILE, "index.json"} <= written
    recorded = read_fingerprints(directory)["notification.due"]
    assert recorded == {"1": v1, "2": fingerprint(event_schema(NotificationDueV2))}
    assert stale_schemas(directory, classes) == []


def test_a_docstring_change_is_not_a_shape_change() -> None:
    assert fingerprint(event_schema(NotificationDueReworded)) == fingerprint(event_schema(NotificationDue))
    assert fingerprint(event_schema(NotificationDueWithColour)) != fingerprint(event_schema(NotificationDue))


def test_schema_export_check_exits_non_zero_when_a_file_is_stale_and_export_fixes_it(tmp_path: Path) -> None:
    directory = copy_of_schemas(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["schema", "export", "--check", "--dir", str(directory)]).exit_code == 0
    (directory / OPENAPI_FILE).write_text("{}\n")
    (directory / "events" / "media.uploaded.v1.json").unlink()
    stale = runner.invoke(app, ["schema", "export", "--check", "--dir", str(directory)])
    assert stale.exit_code == 1
    assert "openapi.json" in stale.output
    assert "media.uploaded.v1.json" in stale.output
    assert runner.invoke(app, ["schema", "export", "--dir", str(directory)]).exit_code == 0
    assert runner.invoke(app, ["schema", "export", "--check", "--dir", str(directory)]).exit_code == 0


def test_the_openapi_document_embeds_the_publishable_payload_schemas() -> None:
    document = openapi_document()
    components = document["components"]["schemas"]
    for event_type in EXTERNALLY_PUBLISHABLE:
        assert f"{event_type}.v1" in components
    assert "payment.captured.v1" not in components
    assert set(document["paths"]["/events"]["post"]["responses"]) == {
        "200", "202", "400", "401", "403", "409", "413", "422", "503"}
