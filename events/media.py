"""Media events: an object in the media bucket was created or deleted (R2 event notifications,
forwarded by `r2-relay/` to `ingress/r2.py`); applied by `handlers.media`.

`key` is the full R2 object key; the object key layout (`events.media_keys`) ties it to the org,
branch, project and file type the event also names, and the handler checks they agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event
from events.ids import BranchId, OrgId, ProjectId
from store.port import MAX_SAFE_INTEGER

FileType = Literal["proxy", "raw", "delivery", "ingest"]
CreateAction = Literal["PutObject", "CopyObject", "CompleteMultipartUpload"]
DeleteAction = Literal["DeleteObject", "LifecycleDeletion"]

MAX_KEY_BYTES = 1024  # R2's limit on an object key


class _MediaObjectEvent(Event):
    """What every notification about one object names: its tenant, project, key and file type."""

    org_id: OrgId
    branch_id: BranchId
    project_id: ProjectId
    bucket: str = Field(min_length=1, max_length=63)
    key: str = Field(min_length=1, max_length=MAX_KEY_BYTES)
    file_type: FileType
    event_time: AwareDatetime  # R2's eventTime: orders notifications for one key

    def lock_key(self) -> str | None:
        return f"media:{self.key}"


class MediaUploaded(_MediaObjectEvent):
    """An object was written to the bucket (a new key, or a new version of an existing key)."""

    event_type = "media.uploaded"
    size_bytes: int = Field(ge=0, le=MAX_SAFE_INTEGER)  # D1 passes numbers through JavaScript
    etag: str = Field(min_length=1, max_length=128)
    action: CreateAction = "PutObject"


class MediaDeleted(_MediaObjectEvent):
    """An object was removed from the bucket (by a client or a lifecycle rule)."""

    event_type = "media.deleted"
    action: DeleteAction = "DeleteObject"
