"""Fingerprints of event schemas: the shape a published event version has, which must never change.

`schemas/fingerprints.json` keeps one per event type and version ever exported (`events.schema` writes
and checks it). The shape leaves annotations out, so a docstring or title edit is not a new version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FINGERPRINTS_FILE = "fingerprints.json"

# Keywords that document a schema without changing what it accepts: editing a docstring or a title is
# not a new version. Everything else (types, required, patterns, enums, defaults, ...) is shape.
_ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "$id", "$schema"})
_NAME_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})


def _shape(node: Any) -> Any:
    if isinstance(node, list):
        return [_shape(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: ({name: _shape(sub) for name, sub in value.items()} if key in _NAME_MAPS and isinstance(value, dict)
              else _shape(value))
        for key, value in node.items() if key not in _ANNOTATIONS
    }


def fingerprint(schema: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of the schema's shape (annotations left out), stable across runs."""
    canonical = json.dumps(_shape(dict(schema)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def read_fingerprints(directory: Path) -> dict[str, dict[str, str]]:
    path = directory / FINGERPRINTS_FILE
    if not path.is_file():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    return {t: dict(v) for t, v in document.get("fingerprints", {}).items()}
