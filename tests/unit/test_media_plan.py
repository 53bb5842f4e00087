"""The pure media planner: which notification wins for a key, what it writes, the tenant check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.media import MediaDeleted, MediaUploaded
from events.media_keys import build_key
from handlers.audit import system_user_id
from handlers.base import Rejected
from handlers.media.plan import (
    CREATE,
    DELETE,
    KeyState,
    MediaFacts,
    MediaRow,
    ProjectRow,
    check_tenant,
    decide,
    ms,
    plan_delete,
    plan_upload,
)
from store import expect_version

ORG = "org_01900000-0000-7000-8000-000000000001"
BRN = "brn_01900000-0000-7000-8000-000000000002"
PRJ = "prj_01900000-0000-7000-8000-000000000003"
OTHER_ORG = "org_01900000-0000-7000-8000-0000000000a1"
OTHER_BRN = "brn_01900000-0000-7000-8000-0000000000a2"
MED = "med_01900000-0000-7000-8000-000000000004"
NTF = "ntf_01900000-0000-7000-8000-000000000005"
AUD = "aud_01900000-0000-7000-8000-000000000006"
NOW = datetime(2026, 9, 21, 13, 46, 40, tzinfo=UTC)
# 1_789_984_800_123 ms: 1_790_000_000 s is 14:13:20Z that day, 15_200 s after 10:00:00
T1 = datetime(2026, 9, 21, 10, 0, 0, 123000, tzinfo=UTC)
PROJECT = ProjectRow(PRJ, BRN, ORG)


def uploaded(file_type: str = "delivery", size: int = 2_000_000, etag: str = "aa", at: datetime = T1) -> MediaUploaded:
    return MediaUploaded(org_id=ORG, branch_id=BRN, project_id=PRJ, bucket="studiovault-media",
                         key=build_key(ORG, BRN, PRJ, file_type, "IMG_1.jpg"), file_type=file_type,  # type: ignore[arg-type]
                         size_bytes=size, etag=etag, event_time=at)


def deleted(at: datetime = T1) -> MediaDeleted:
    return MediaDeleted(org_id=ORG, branch_id=BRN, project_id=PRJ, bucket="studiovault-media",
                        key=build_key(ORG, BRN, PRJ, "delivery", "IMG_1.jpg"), file_type="delivery", event_time=at)


def test_event_time_is_exact_milliseconds() -> None:
    assert ms(T1) == 1_789_984_800_123


PRESENT = KeyState(MED, "present", 1000, "bb", 3)
TOMBSTONE = KeyState(None, "deleted", 1000, "", 2)


@pytest.mark.parametrize(
    ("state", "incoming", "has_row", "expected"),
    [
        (None, (1000, CREATE, "bb"), False, "insert"),
        (None, (1000, DELETE, ""), False, "tombstone"),  # a delete before its create
        (PRESENT, (1000, CREATE, "bb"), True, "duplicate"),
        (PRESENT, (999, CREATE, "zz"), True, "stale"),
        (PRESENT, (1000, CREATE, "aa"), True, "stale"),  # same ms: the larger eTag wins
        (PRESENT, (1000, CREATE, "cc"), True, "update"),
        (PRESENT, (2000, CREATE, "bb"), True, "update"),  # same bytes uploaded again later
        (PRESENT, (1000, DELETE, ""), True, "delete"),  # same ms: the delete wins
        (PRESENT, (999, DELETE, ""), True, "stale"),
        (PRESENT, (2000, CREATE, "cc"), False, "insert"),  # the row was removed by someone else
        (TOMBSTONE, (999, CREATE, "aa"), False, "stale"),  # the late create of a deleted object
        (TOMBSTONE, (1000, CREATE, "zz"), False, "stale"),
        (TOMBSTONE, (1001, CREATE, "aa"), False, "insert"),  # re-created after the delete
        (TOMBSTONE, (1000, DELETE, ""), False, "duplicate"),
        (TOMBSTONE, (1500, DELETE, ""), False, "tombstone"),
    ],
)
def test_only_a_notification_newer_than_the_keys_last_one_is_applied(
    state: KeyState | None, incoming: tuple[int, int, str], has_row: bool, expected: str
) -> None:
    assert decide(state, incoming, has_row) == expected


def test_the_first_delivery_upload_inserts_a_clean_row_and_asks_for_photos_ready() -> None:
    plan = plan_upload(uploaded(), MediaFacts(PROJECT, None, None), NOW, media_id=MED, notification_id=NTF)
    insert = next(s for s in plan.statements if s.sql.startswith("INSERT INTO media_objects"))
    assert insert.params == (MED, PRJ, BRN, build_key(ORG, BRN, PRJ, "delivery", "IMG_1.jpg"), "delivery",
                             2_000_000, "clean", 1_789_984_800_123)
    assert [s.sql.split(" (")[0] for s in plan.statements] == [
        "INSERT INTO media_objects", "INSERT INTO _assert(ok, code) SELECT", "INSERT INTO media_keys"]
    (follow_up,) = plan.follow_ups
    assert follow_up.type == "notification.due"
    assert follow_up.dedupe_key == f"notify:photos_ready:{PRJ}"
    assert (follow_up.org_id, follow_up.branch_id) == (ORG, BRN)
    assert follow_up.payload["kind"] == "photos_ready"
    assert follow_up.payload["project_id"] == PRJ
    assert follow_up.payload["notification_id"] == NTF


@pytest.mark.parametrize(("file_type", "watermark"), [("proxy", "proof"), ("raw", None), ("ingest", None)])
def test_other_file_types_get_their_watermark_state_and_no_notification(file_type: str, watermark: str | None) -> None:
    plan = plan_upload(uploaded(file_type), MediaFacts(PROJECT, None, None), NOW, media_id=MED, notification_id=NTF)
    assert plan.statements[0].params[6] == watermark
    assert plan.follow_ups == []


def test_a_newer_upload_of_a_present_key_updates_its_size_under_the_version_check() -> None:
    facts = MediaFacts(PROJECT, KeyState(MED, "present", 1000, "aa", 4), MediaRow(MED, 7))
    plan = plan_upload(uploaded(size=3_500_000, etag="bb"), facts, NOW, media_id="unused", notification_id=NTF)
    assert plan.statements[0] == expect_version("media_objects", MED, 7)
    assert plan.statements[1].sql.startswith("UPDATE media_objects SET size_bytes = ?")
    assert plan.statements[1].params == (3_500_000, "delivery", "clean", 1_789_984_800_123, MED)
    assert plan.statements[2].params[-1] == 4  # the media_keys version read
    assert plan.follow_ups == []  # not the first delivery file: it was already there


def test_a_stale_upload_writes_nothing_and_is_acknowledged_as_ignored() -> None:
    facts = MediaFacts(PROJECT, KeyState(None, "deleted", ms(T1) + 1, "", 2), None)
    plan = plan_upload(uploaded(), facts, NOW, media_id=MED, notification_id=NTF)
    assert (list(plan.statements), list(plan.follow_ups), plan.outcome) == ([], [], "ignored")


def test_deleting_a_present_row_removes_it_and_audits_as_the_orgs_system_user() -> None:
    facts = MediaFacts(PROJECT, KeyState(MED, "present", 1000, "aa", 1), MediaRow(MED, 2))
    plan = plan_delete(deleted(), facts, NOW, audit_id=AUD)
    assert plan.statements[0] == expect_version("media_objects", MED, 2)
    assert plan.statements[1].params == (MED,)
    assert plan.statements[2].params[0] == system_user_id(ORG)
    audit = plan.statements[3]
    assert audit.params[:6] == (AUD, ORG, BRN, system_user_id(ORG), "media.deleted", "medium")
    assert '"media_id": "' + MED + '"' in str(audit.params[6])


def test_a_delete_before_any_create_only_records_a_tombstone() -> None:
    plan = plan_delete(deleted(), MediaFacts(PROJECT, None, None), NOW, audit_id=AUD)
    assert [s.sql.split(" (")[0] for s in plan.statements] == [
        "INSERT INTO _assert(ok, code) SELECT", "INSERT INTO media_keys"]
    assert plan.statements[1].params[5:7] == ("deleted", 1_789_984_800_123)


@pytest.mark.parametrize(
    ("envelope_tenant", "project", "reason"),
    [
        ((ORG, BRN), None, "unknown_project"),
        ((ORG, BRN), ProjectRow(PRJ, OTHER_BRN, ORG), "wrong_tenant"),  # project in another branch
        ((ORG, BRN), ProjectRow(PRJ, OTHER_BRN, OTHER_ORG), "wrong_tenant"),  # ... of another org
        ((ORG, BRN), ProjectRow(PRJ, BRN, OTHER_ORG), "wrong_tenant"),  # the key's branch is another org's
        ((OTHER_ORG, BRN), PROJECT, "wrong_tenant"),  # the envelope speaks for another org
        ((ORG, None), PROJECT, "wrong_tenant"),
    ],
)
def test_a_project_outside_the_keys_tenant_is_rejected(
    envelope_tenant: tuple[str, str | None], project: ProjectRow | None, reason: str
) -> None:
    with pytest.raises(Rejected) as caught:
        check_tenant(uploaded(), *envelope_tenant, MediaFacts(project, None, None))
    assert caught.value.reason == reason


def test_an_event_whose_fields_disagree_with_its_key_is_rejected() -> None:
    event = uploaded().model_copy(update={"file_type": "raw"})
    with pytest.raises(Rejected) as caught:
        check_tenant(event, ORG, BRN, MediaFacts(PROJECT, None, None))
    assert caught.value.reason == "key_mismatch"


def test_the_same_tenant_passes() -> None:
    check_tenant(uploaded(), ORG, BRN, MediaFacts(PROJECT, None, None))
