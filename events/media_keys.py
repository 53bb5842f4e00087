"""The media bucket's object key layout: what ties an R2 object to its org, branch, project and file type.

    orgs/{org_id}/branches/{branch_id}/projects/{project_id}/{file_type}/{name}

- `org_id`, `branch_id`, `project_id`: the entity IDs (`org_<uuidv7>`, `brn_<uuidv7>`, `prj_<uuidv7>`),
  canonical lowercase, exactly as stored in D1.
- `file_type`: one of `proxy` (watermarked proofs shown to the client), `raw` (camera originals),
  `delivery` (final, clean images handed to the client), `ingest` (card dumps awaiting sorting).
- `name`: the file name, optionally under sub-folders (`ceremony/IMG_0001.jpg`). Every segment is
  non-empty, not `.` or `..`, and has no control characters; so a folder marker (`.../delivery/`) is
  not a media object. The whole key is at most 1,024 bytes of UTF-8 (R2's limit).

The file type decides the `watermark_state` of the `media_objects` row: `proxy` → `proof`,
`delivery` → `clean`; `raw` and `ingest` are never shown to clients and have none (NULL).

Example: `orgs/org_0190.../branches/brn_0190.../projects/prj_0190.../delivery/ceremony/IMG_0001.jpg`.
A key that does not fit is refused by the ingress with the reason `parse_key` gives, and nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import get_args

from events.ids import InvalidId, validate_id
from events.media import MAX_KEY_BYTES, FileType

FILE_TYPES: tuple[str, ...] = get_args(FileType)
WATERMARK_STATE: dict[str, str | None] = {"proxy": "proof", "delivery": "clean", "raw": None, "ingest": None}
LAYOUT = "orgs/{org_id}/branches/{branch_id}/projects/{project_id}/{file_type}/{name}"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIXED = (("orgs", "org"), ("branches", "brn"), ("projects", "prj"))


class KeyLayoutError(ValueError):
    """An object key that does not follow `LAYOUT`; the message says what is wrong."""


@dataclass(frozen=True)
class MediaKey:
    org_id: str
    branch_id: str
    project_id: str
    file_type: str
    name: str

    @property
    def key(self) -> str:
        return build_key(self.org_id, self.branch_id, self.project_id, self.file_type, self.name)

    @property
    def watermark_state(self) -> str | None:
        return WATERMARK_STATE[self.file_type]


def build_key(org_id: str, branch_id: str, project_id: str, file_type: str, name: str) -> str:
    return f"orgs/{org_id}/branches/{branch_id}/projects/{project_id}/{file_type}/{name}"


def parse_key(key: str) -> MediaKey:
    """The parts of a media object key; raises `KeyLayoutError` saying why a key does not fit."""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise KeyLayoutError(f"key is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise KeyLayoutError("key contains a control character")
    parts = key.split("/")
    if len(parts) < 8:
        raise KeyLayoutError(f"key {key!r} does not follow {LAYOUT}")
    ids: list[str] = []
    for index, (literal, prefix) in enumerate(_FIXED):
        if parts[2 * index] != literal:
            raise KeyLayoutError(f"key {key!r}: segment {2 * index + 1} must be {literal!r} ({LAYOUT})")
        try:
            ids.append(validate_id(parts[2 * index + 1], prefix))
        except InvalidId as exc:
            raise KeyLayoutError(f"key {key!r}: {exc}") from exc
    file_type = parts[6]
    if file_type not in FILE_TYPES:
        raise KeyLayoutError(f"key {key!r}: file type {file_type!r} is not one of {', '.join(FILE_TYPES)}")
    name_parts = parts[7:]
    for segment in name_parts:
        if segment in ("", ".", ".."):
            raise KeyLayoutError(f"key {key!r}: the file name has an empty, '.' or '..' segment")
    return MediaKey(ids[0], ids[1], ids[2], file_type, "/".join(name_parts))
