"""Pure planning for media events: which notification wins for a key, and the statements it writes.

R2 notifications arrive at least once and in any order. Each one carries a stamp, compared as a tuple:

    (eventTime in ms, 0 for a create / 1 for a delete, eTag)

and is applied only if its stamp is newer than the stamp stored for its key in `media_keys`
(migration 0005). A delete at the same millisecond as a create wins; two creates at the same
millisecond are ordered by eTag, so every arrival order converges on the same final row. An equal
stamp is a duplicate, an older one is stale; both are acknowledged and change nothing. A delete that
arrives first leaves a `deleted` tombstone, so its late create is recognised as stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.clock import epoch_ms as ms
from events.envelope import envelope_for
from events.media import MediaDeleted, MediaUploaded
from events.media_keys import WATERMARK_STATE, KeyLayoutError, parse_key
from events.notifications import NotificationDue, notification_dedupe_key
from handlers.audit import audit_row
from handlers.base import Plan, Rejected
from store import Statement, expect_rows, expect_version

CREATE, DELETE = 0, 1
Stamp = tuple[int, int, str]


@dataclass(frozen=True)
class ProjectRow:
    id: str
    branch_id: str
    org_id: str


@dataclass(frozen=True)
class KeyState:
    media_id: str | None
    state: str  # present | deleted
    event_time: int
    etag: str
    version: int

    @property
    def stamp(self) -> Stamp:
        return (self.event_time, DELETE if self.state == "deleted" else CREATE, self.etag)


@dataclass(frozen=True)
class MediaRow:
    id: str
    version: int


@dataclass(frozen=True)
class MediaFacts:
    """What a media handler reads (in one round trip) before planning."""

    project: ProjectRow | None
    key_state: KeyState | None
    media: MediaRow | None


def stamp_of(event: MediaUploaded | MediaDeleted) -> Stamp:
    if isinstance(event, MediaUploaded):
        return (ms(event.event_time), CREATE, event.etag)
    return (ms(event.event_time), DELETE, "")


def decide(state: KeyState | None, incoming: Stamp, has_row: bool) -> str:
    """insert | update | delete | tombstone (record the delete only) | stale | duplicate."""
    if state is not None and incoming == state.stamp:
        return "duplicate"
    if state is not None and incoming < state.stamp:
        return "stale"
    if incoming[1] == CREATE:
        return "update" if has_row else "insert"
    return "delete" if has_row else "tombstone"


def check_tenant(event: MediaUploaded | MediaDeleted, org_id: str, branch_id: str | None, facts: MediaFacts) -> None:
    """The key, the event, the envelope's tenant and the stored project must all agree, else Rejected."""
    try:
        parsed = parse_key(event.key)
    except KeyLayoutError as exc:
        raise Rejected("bad_key", str(exc)) from exc
    named = (parsed.org_id, parsed.branch_id, parsed.project_id, parsed.file_type)
    if named != (event.org_id, event.branch_id, event.project_id, event.file_type):
        raise Rejected("key_mismatch", f"key {event.key!r} does not name the event's org/branch/project/file type")
    if (org_id, branch_id) != (event.org_id, event.branch_id):
        raise Rejected("wrong_tenant", f"the envelope's tenant {org_id}/{branch_id} does not own {event.key!r}")
    project = facts.project
    if project is None:
        raise Rejected("unknown_project", event.project_id)
    if (project.org_id, project.branch_id) != (event.org_id, event.branch_id):
        raise Rejected("wrong_tenant", f"project {project.id} belongs to {project.org_id}/{project.branch_id},"
                                       f" not {event.org_id}/{event.branch_id}")


def plan_upload(event: MediaUploaded, facts: MediaFacts, now: datetime, media_id: str, notification_id: str) -> Plan:
    """The writes for an object created: insert or update its row, or nothing if stale/duplicate."""
    state = facts.key_state
    decision = decide(state, stamp_of(event), facts.media is not None)
    if decision in ("stale", "duplicate"):
        return Plan(outcome="ignored", log={"media_decision": decision})
    statements: list[Statement] = []
    follow_ups = []
    watermark = WATERMARK_STATE[event.file_type]
    if facts.media is not None:  # decision == "update": a newer version of the same key
        media_id = facts.media.id
        statements += [
            expect_version("media_objects", media_id, facts.media.version),
            Statement("UPDATE media_objects SET size_bytes = ?, file_type = ?, watermark_state = ?, uploaded_at = ?,"
                      " version = version + 1 WHERE id = ?",
                      (event.size_bytes, event.file_type, watermark, ms(event.event_time), media_id)),
        ]
    else:
        statements.append(Statement(
            "INSERT INTO media_objects (id, project_id, branch_id, path, file_type, size_bytes, watermark_state,"
            " uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (media_id, event.project_id, event.branch_id, event.key, event.file_type, event.size_bytes, watermark,
             ms(event.event_time)),
        ))
        if event.file_type == "delivery":  # one per project: the inbox drops a second one by its dedupe key
            follow_ups.append(envelope_for(
                NotificationDue(kind="photos_ready", project_id=event.project_id, notification_id=notification_id),
                org_id=event.org_id, branch_id=event.branch_id, occurred_at=now,
                dedupe_key=notification_dedupe_key("photos_ready", event.project_id),
            ))
    statements += _write_key_state(event, state, new_state="present", media_id=media_id, etag=event.etag, now=now)
    return Plan(statements=statements, follow_ups=follow_ups,
                log={"media_decision": decision, "media_id": media_id, "size_bytes": event.size_bytes})


def plan_delete(event: MediaDeleted, facts: MediaFacts, now: datetime, audit_id: str) -> Plan:
    """The writes for an object deleted: remove its row (with an audit row), or record a tombstone."""
    state = facts.key_state
    decision = decide(state, stamp_of(event), facts.media is not None)
    if decision in ("stale", "duplicate"):
        return Plan(outcome="ignored", log={"media_decision": decision})
    statements: list[Statement] = []
    media_id = None
    if facts.media is not None:  # decision == "delete"
        media_id = facts.media.id
        payload = {"media_id": media_id, "path": event.key, "project_id": event.project_id,
                   "file_type": event.file_type, "action": event.action, "event_time": event.event_time.isoformat()}
        statements += [
            expect_version("media_objects", media_id, facts.media.version),
            Statement("DELETE FROM media_objects WHERE id = ?", (media_id,)),
            *audit_row(audit_id, event.org_id, event.branch_id, event_type="media.deleted", severity="medium",
                       payload=payload, now_ms=ms(now)),
        ]
    statements += _write_key_state(event, state, new_state="deleted", media_id=None, etag="", now=now)
    return Plan(statements=statements, log={"media_decision": decision, "media_id": media_id})


def _write_key_state(
    event: MediaUploaded | MediaDeleted, state: KeyState | None, *, new_state: str, media_id: str | None, etag: str,
    now: datetime,
) -> list[Statement]:
    if state is None:  # first notification for this key: assert no concurrent worker recorded one meanwhile
        return [
            expect_rows("SELECT count(*) = 0 FROM media_keys WHERE path = ?", [event.key]),
            Statement(
                "INSERT INTO media_keys (path, media_id, org_id, branch_id, project_id, state, event_time, etag,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.key, media_id, event.org_id, event.branch_id, event.project_id, new_state,
                 ms(event.event_time), etag, ms(now)),
            ),
        ]
    return [
        expect_rows("SELECT count(*) FROM media_keys WHERE path = ? AND version = ?", [event.key, state.version]),
        Statement(
            "UPDATE media_keys SET media_id = ?, state = ?, event_time = ?, etag = ?, updated_at = ?,"
            " version = version + 1 WHERE path = ?",
            (media_id, new_state, ms(event.event_time), etag, ms(now), event.key),
        ),
    ]
