"""JSON Schemas of the event payloads and of the envelope, for producers outside Python.

The app (TypeScript on Workers) writes events into `event_inbox` itself, in the same D1 batch as its
own change (a transactional outbox; `outbox/` is its npm package). It validates what it writes against
these schemas, generated from the pydantic models so the two sides cannot drift apart:

    schemas/envelope.json                       the Envelope (what `payload_json` holds)
    schemas/events/<type>.v<version>.json       one payload schema per event type and version
    schemas/index.json                          the types, their versions, and which ones external
                                                producers may publish
    schemas/fingerprints.json                   the shape of every type and version ever exported: a
                                                model whose shape changes without a schema_version
                                                bump is refused (`fingerprint_conflicts`)

JSON Schema draft 2020-12. The entity IDs (`org_<uuidv7>`, ...) are checked in Python by
`AfterValidator`s (`events.ids`), which pydantic leaves out of its JSON Schema; the generator here
recognises those validators and writes the same rule as a `pattern`, so a non-Python validator
enforces it too. Regenerate after changing an event model (see schemas/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from events import ids
from events.catalog import EXTERNALLY_PUBLISHABLE
from events.envelope import Envelope, Event
from events.fingerprints import FINGERPRINTS_FILE, fingerprint, read_fingerprints

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://studiovault.in/schemas"
ENVELOPE_FILE = "envelope.json"
INDEX_FILE = "index.json"
EVENTS_DIR = "events"

# The JSON Schema (ECMAScript regex) form of `events.ids.validate_id`: canonical lowercase hyphenated
# UUID, version 7, RFC 4122 variant, after `<prefix>_`.
_UUIDV7 = "[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


# An RFC 3339 date-time with an offset that both pydantic (`AwareDatetime`) and ajv's `date-time` accept.
AWARE_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:[0-5]\d(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$"


def id_pattern(prefix: str) -> str:
    """The `pattern` an ID with `prefix` must match, e.g. `^org_<uuidv7>$`."""
    if prefix not in ids.PREFIXES:
        raise ValueError(f"unknown ID prefix {prefix!r}; known: {', '.join(sorted(ids.PREFIXES))}")
    return f"^{prefix}_{_UUIDV7}$"


def event_schema_id(event_type: str, schema_version: int) -> str:
    return f"{BASE_URI}/{EVENTS_DIR}/{event_type}.v{schema_version}.json"


def event_schema_file(event_type: str, schema_version: int) -> str:
    """The schema's path relative to the schema directory."""
    return f"{EVENTS_DIR}/{event_type}.v{schema_version}.json"


@cache
def id_validator_prefixes() -> dict[Callable[..., Any], str]:
    """The ID validators of `events.ids` (the functions inside `OrgId`, `BranchId`, ...) and the prefix
    each one enforces, found by asking each validator which prefix's fresh ID it accepts."""
    found: dict[Callable[..., Any], str] = {}
    for name, alias in vars(ids).items():
        if get_origin(alias) is not Annotated:
            continue
        base, *metadata = get_args(alias)
        if base is not str:
            continue
        for item in metadata:
            if not isinstance(item, AfterValidator):
                continue
            accepted = [prefix for prefix in ids.PREFIXES if _accepts(item.func, ids.new_id(prefix))]
            if len(accepted) != 1:
                raise RuntimeError(f"events.ids.{name}: expected exactly one accepted ID prefix, got {accepted}")
            found[item.func] = accepted[0]
    return found


def _accepts(func: Callable[..., Any], value: str) -> bool:
    try:
        func(value)
    except (ValueError, TypeError):
        return False
    return True


class EventJsonSchema(GenerateJsonSchema):
    """pydantic's draft 2020-12 generator, plus the ID rules of `events.ids` as `pattern`s.

    Any other after-validator is Python-only: its field keeps the inner type's schema and gets a
    `$comment` naming the validator, so a reader knows the Python side checks more."""

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        """`format: date-time`, plus, for `AwareDatetime`, the subset of RFC 3339 that pydantic also
        accepts: ajv's date-time allows a leap second (`:60`) and an hour-only offset (`+05`), which
        pydantic refuses, and such an event would be dead-lettered after its producer committed it."""
        result = super().datetime_schema(schema)
        if schema.get("tz_constraint") == "aware" and result.get("type") == "string":
            return {**result, "pattern": AWARE_DATETIME_PATTERN}
        return result

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        inner = super().function_after_schema(schema)
        function = schema["function"]["function"]
        prefix = id_validator_prefixes().get(function)
        if prefix is not None:
            return {**inner, "pattern": id_pattern(prefix)}
        name = getattr(function, "__qualname__", repr(function))
        return {**inner, "$comment": f"also checked in Python by {name}, which JSON Schema does not express"}


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation", schema_generator=EventJsonSchema)


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of `cls`'s payload (what `Envelope.payload` holds for its type and version)."""
    schema = model_schema(cls)
    schema.pop("title", None)
    return {
        "$schema": DIALECT,
        "$id": event_schema_id(cls.event_type, cls.schema_version),
        "title": f"{cls.event_type} v{cls.schema_version} ({cls.__name__})",
        **schema,
    }


def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of `Envelope`: what `event_inbox.payload_json` holds."""
    schema = model_schema(Envelope)
    schema.pop("title", None)
    return {"$schema": DIALECT, "$id": f"{BASE_URI}/{ENVELOPE_FILE}", "title": "Envelope", **schema}


def event_schemas(
    event_classes: Iterable[type[Event]], publishable: Iterable[str] = EXTERNALLY_PUBLISHABLE
) -> dict[str, dict[str, Any]]:
    """Every schema file's content by its path relative to the schema directory: one per event type and
    version, the envelope's, and the index. `publishable`: the types external producers may publish."""
    classes: dict[tuple[str, int], type[Event]] = {}
    for cls in event_classes:
        key = (cls.event_type, cls.schema_version)
        if key in classes and classes[key] is not cls:
            raise ValueError(f"event type {key[0]!r} v{key[1]} is given twice: {classes[key].__name__}, {cls.__name__}")
        classes[key] = cls
    external = set(publishable)
    unknown = external - {event_type for event_type, _ in classes}
    if unknown:
        raise ValueError(f"publishable types without an event class: {', '.join(sorted(unknown))}")

    files: dict[str, dict[str, Any]] = {ENVELOPE_FILE: envelope_schema()}
    entries: list[dict[str, Any]] = []
    for (event_type, version), cls in sorted(classes.items()):
        path = event_schema_file(event_type, version)
        files[path] = event_schema(cls)
        entries.append(
            {
                "type": event_type,
                "schema_version": version,
                "$id": event_schema_id(event_type, version),
                "file": path,
                "model": f"{cls.__module__}.{cls.__qualname__}",
                "external": event_type in external,
            }
        )
    files[INDEX_FILE] = {
        "$comment": "Generated by events.schema from the pydantic event models; do not edit by hand.",
        "dialect": DIALECT,
        "envelope": {"$id": f"{BASE_URI}/{ENVELOPE_FILE}", "file": ENVELOPE_FILE},
        "events": entries,
        "external_producers": sorted(external),
        "id_patterns": {prefix: id_pattern(prefix) for prefix in sorted(ids.PREFIXES)},
        "aware_datetime_pattern": AWARE_DATETIME_PATTERN,
    }
    return files


def render(document: Mapping[str, Any]) -> str:
    """Stable, sorted, pretty JSON with a final newline: the same models always give the same bytes."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_files(
    directory: Path,
    event_classes: Iterable[type[Event]],
    publishable: Iterable[str] = EXTERNALLY_PUBLISHABLE,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """Every file the export writes, rendered, by path relative to `directory`: the event schemas, the
    envelope's, the index, the fingerprints (merged with those recorded in `directory`) and `extra`
    documents (the producer API's OpenAPI document)."""
    classes = list(event_classes)
    documents: dict[str, Mapping[str, Any]] = {**event_schemas(classes, publishable), **(extra or {})}
    documents[FINGERPRINTS_FILE] = fingerprints_document(directory, classes)
    return {path: render(document) for path, document in documents.items()}


def write_schemas(
    directory: Path,
    event_classes: Iterable[type[Event]],
    publishable: Iterable[str] = EXTERNALLY_PUBLISHABLE,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write the schema files into `directory` and return the paths that changed (written or removed).

    Refuses (ValueError, nothing written) while `fingerprint_conflicts` finds a changed version. Files
    whose content is already right are left alone; event schemas of types or versions no longer given
    are removed from `directory/events/`. Nothing else in `directory` is touched."""
    classes = list(event_classes)
    conflicts = fingerprint_conflicts(directory, classes)
    if conflicts:
        raise ValueError("; ".join(conflicts))
    files = schema_files(directory, classes, publishable, extra)
    changed: list[Path] = []
    for relative, text in sorted(files.items()):
        target = directory / relative
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(target)
    for stale in sorted((directory / EVENTS_DIR).glob("*.v*.json")):
        if f"{EVENTS_DIR}/{stale.name}" not in files:
            stale.unlink()
            changed.append(stale)
    return changed


def stale_schemas(
    directory: Path,
    event_classes: Iterable[type[Event]],
    publishable: Iterable[str] = EXTERNALLY_PUBLISHABLE,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """The schema files in `directory` that `write_schemas` would change (empty: up to date). For CI."""
    files = schema_files(directory, event_classes, publishable, extra)
    out_of_date = [
        relative
        for relative, text in sorted(files.items())
        if not (directory / relative).is_file() or (directory / relative).read_text(encoding="utf-8") != text
    ]
    extra_files = [
        f"{EVENTS_DIR}/{path.name}"
        for path in sorted((directory / EVENTS_DIR).glob("*.v*.json"))
        if f"{EVENTS_DIR}/{path.name}" not in files
    ]
    return out_of_date + extra_files


# ---- fingerprints: a published version's shape never changes ------------------------------------------

def fingerprint_conflicts(directory: Path, event_classes: Iterable[type[Event]]) -> list[str]:
    """Every event type and version whose model no longer has the shape recorded when it was first
    exported: its schema_version must be bumped (the old version's events are still in inboxes and
    queues, and producers validate against the old file). Empty: no conflict."""
    recorded = read_fingerprints(directory)
    problems = []
    for cls in sorted(event_classes, key=lambda c: (c.event_type, c.schema_version)):
        was = recorded.get(cls.event_type, {}).get(str(cls.schema_version))
        now = fingerprint(event_schema(cls))
        if was is not None and was != now:
            problems.append(
                f"{cls.event_type} v{cls.schema_version} ({cls.__module__}.{cls.__qualname__}) changed shape since "
                f"it was exported ({was[:19]}… → {now[:19]}…): bump its schema_version (keep v{cls.schema_version} "
                f"readable) instead of changing a published version"
            )
    return problems


def fingerprints_document(directory: Path, event_classes: Iterable[type[Event]]) -> dict[str, Any]:
    """The fingerprints file after an export: every version recorded before (history is kept, so a
    removed version cannot come back with another shape) plus the current classes' versions."""
    merged = read_fingerprints(directory)
    for cls in event_classes:
        merged.setdefault(cls.event_type, {}).setdefault(str(cls.schema_version), fingerprint(event_schema(cls)))
    return {
        "$comment": "Generated by `studiovault schema export`: the shape of every event type and version ever "
                    "exported. A changed shape needs a new schema_version; do not edit by hand.",
        "fingerprints": {t: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for t, v in sorted(merged.items())},
    }
