"""`POST /events` and `GET /events/{id}` over real HTTP, signed by the reference `standardwebhooks` library:
accepted once and idempotent on the dedupe key; every refusal has its documented status and writes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from events.ids import new_id
from events.media_keys import build_key
from ingress.producer_api import OPENAPI_FILE
from tests.support.factories import Tenant, make_tenant
from tests.support.gateway import serve
from tests.support.pipeline import Pipeline

DESKTOP = "whsec_ZGVza3RvcC1zeW5jLXNlY3JldC1rZXktMDAwMDAwMDA="
DESKTOP_OLD = "whsec_b2xkLWRlc2t0b3Atc3luYy1zZWNyZXQta2V5LTAwMDA="
TOOLS = "whsec_b3RoZXItdG9vbC1zZWNyZXQta2V5LTAwMDAwMDAwMDA="
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@dataclass
class Api:
    http: httpx.AsyncClient
    pipeline: Pipeline
    tenant: Tenant

    def signed(self, body: bytes, secret: str = DESKTOP, *, at: datetime | None = None,
               msg_id: str | None = None) -> dict[str, str]:
        moment = at or datetime.now(UTC)
        msg = msg_id or f"msg_{new_id('evt')[4:]}"
        signature = Webhook(secret).sign(msg, moment, body.decode())
        return {"webhook-id": msg, "webhook-timestamp": str(int(moment.timestamp())), "webhook-signature": signature,
                "content-type": "application/json"}

    async def post(self, document: dict[str, Any] | bytes, secret: str = DESKTOP, **kw: Any) -> httpx.Response:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        return await self.http.post("/events", content=body, headers=self.signed(body, secret, **kw))

    async def get(self, event_id: str, secret: str = DESKTOP) -> httpx.Response:
        return await self.http.get(f"/events/{event_id}", headers=self.signed(b"", secret))

    async def inbox(self) -> list[dict[str, Any]]:
        return await self.pipeline.db.query("SELECT * FROM event_inbox ORDER BY created_at")

    async def assert_nothing_written(self) -> None:
        assert await self.inbox() == []
        assert await self.pipeline.queue.depth() == 0


@pytest.fixture
async def api(pipeline: Pipeline) -> AsyncIterator[Api]:
    tenant = await make_tenant(pipeline.db)
    app = pipeline.ingress_app(producer_secrets={"desktop-sync": [SecretStr(DESKTOP), SecretStr(DESKTOP_OLD)],
                                                 "tools": [SecretStr(TOOLS)]}, max_body_bytes=8 * 1024)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Api(http, pipeline, tenant)


def notification(t: Tenant, key: str = "desktop:booking:1", **payload: Any) -> dict[str, Any]:
    return {"type": "notification.due", "org_id": t.org_id, "branch_id": t.branch_id, "dedupe_key": key,
            "payload": {"notification_id": new_id("ntf"), "kind": "booking_confirmed", "project_id": t.project_id,
                        **payload}}


def media(t: Tenant, **changes: Any) -> dict[str, Any]:
    payload = {"org_id": t.org_id, "branch_id": t.branch_id, "project_id": t.project_id, "bucket": "media",
               "key": build_key(t.org_id, t.branch_id, t.project_id, "delivery", "IMG_1.jpg"),
               "file_type": "delivery", "event_time": "2026-11-29T10:00:00+05:30", "size_bytes": 1024, "etag": "e1"}
    return {"type": "media.uploaded", "org_id": t.org_id, "branch_id": t.branch_id, "dedupe_key": "desktop:media:1",
            "payload": {**payload, **changes}}


async def test_a_signed_event_is_recorded_queued_and_answered_202_with_its_id(api: Api) -> None:
    response = await api.post(notification(api.tenant))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {"event_id": body["event_id"], "status": "pending", "duplicate": False}
    (row,) = await api.inbox()
    assert (row["id"], row["type"], row["producer"], row["self_enqueued"]) == (
        body["event_id"], "notification.due", "desktop-sync", 1)
    assert await api.pipeline.queue.depth() == 1
    assert await api.pipeline.db.query("SELECT seq FROM inbox_feed") == []  # it enqueued it itself


async def test_a_media_event_signed_with_the_previous_secret_is_accepted_during_rotation(api: Api) -> None:
    response = await api.post(media(api.tenant), DESKTOP_OLD)
    assert response.status_code == 202, response.text


async def test_a_replay_answers_200_with_the_same_id_and_current_status(api: Api) -> None:
    document = notification(api.tenant)
    first = (await api.post(document)).json()
    again = await api.post(document)  # same payload, a new webhook-id: the producer's retry
    assert again.status_code == 200, again.text
    assert again.json() == {"event_id": first["event_id"], "status": "pending", "duplicate": True}
    assert len(await api.inbox()) == 1
    assert await api.pipeline.queue.depth() == 1


async def test_a_desktop_event_with_its_own_old_id_is_accepted_as_given(api: Api) -> None:
    import uuid_utils  # noqa: PLC0415

    then = datetime.now(UTC) - timedelta(days=3)
    event_id = f"evt_{uuid_utils.uuid7(nanoseconds=int(then.timestamp() * 1000) * 1_000_000)}"
    document = {**notification(api.tenant), "event_id": event_id, "occurred_at": then.isoformat()}
    response = await api.post(document)
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == event_id
    (row,) = await api.inbox()
    assert row["occurred_at"] == int(then.timestamp() * 1000)


async def test_get_answers_the_status_of_the_producers_own_events_only(api: Api) -> None:
    event_id = (await api.post(notification(api.tenant))).json()["event_id"]
    mine = await api.get(event_id)
    assert mine.status_code == 200, mine.text
    status = mine.json()
    assert (status["event_id"], status["status"], status["type"], status["attempts"]) == (
        event_id, "pending", "notification.due", 0)
    assert (await api.get(event_id, TOOLS)).status_code == 404  # another producer's
    assert (await api.get(new_id("evt"))).status_code == 404
    assert (await api.get("not-an-id")).status_code == 404
    unsigned = await api.http.get(f"/events/{event_id}")
    assert unsigned.status_code == 401


@pytest.mark.parametrize("case", ["forged", "wrong_secret", "stale", "unsigned", "altered_body"])
async def test_a_request_not_signed_by_a_producer_is_401_and_writes_nothing(api: Api, case: str) -> None:
    body = json.dumps(notification(api.tenant)).encode()
    secret = "whsec_bm90LW91ci1zZWNyZXQtYXQtYWxsLTAwMDAwMDAwMA==" if case == "wrong_secret" else DESKTOP
    at = datetime.now(UTC) - timedelta(minutes=10) if case == "stale" else None
    headers = api.signed(body, secret, at=at)
    if case == "forged":
        headers["webhook-signature"] = "v1," + "A" * 44
    elif case == "unsigned":
        headers = {"content-type": "application/json"}
    elif case == "altered_body":
        body = body.replace(b"booking_confirmed", b"photos_ready")
    response = await api.http.post("/events", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "bad_signature"
    await api.assert_nothing_written()


def _set(path: str, value: Any) -> Any:
    def change(document: dict[str, Any], _: Tenant) -> dict[str, Any]:
        *parents, last = path.split(".")
        node = document
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
        return document
    return change


DELETE = object()
BODY_CASES: dict[str, tuple[Any, int, str, str | None]] = {
    "unknown_type": (_set("type", "project.created"), 422, "unknown_event_type", "type"),
    "unknown_version": (_set("schema_version", 7), 422, "unknown_schema_version", "schema_version"),
    "disallowed_type": (_set("type", "payment.captured"), 403, "type_not_allowed", "type"),
    "bad_payload": (_set("payload.project_id", "prj_123"), 422, "invalid_field", "payload.project_id"),
    "unknown_payload_field": (_set("payload.colour", "red"), 422, "invalid_field", "payload.colour"),
    "missing_branch": (_set("branch_id", DELETE), 422, "invalid_field", "branch_id"),
    "tenant_mismatch": (lambda _, t: media(t, org_id=new_id("org")), 422, "tenant_mismatch", "payload.org_id"),
    "bad_key": (lambda _, t: media(t, key="somewhere/else.jpg"), 422, "bad_key", "payload.key"),
    "oversize": (_set("payload.kind", "x" * 9000), 413, "body_too_large", None),
}


@pytest.mark.parametrize("case", list(BODY_CASES))
async def test_a_refused_body_gets_its_documented_status_and_writes_nothing(api: Api, case: str) -> None:
    change, status, error, field = BODY_CASES[case]
    response = await api.post(change(notification(api.tenant), api.tenant))
    assert response.status_code == status, response.text
    assert (response.json()["error"], response.json().get("field")) == (error, field)
    await api.assert_nothing_written()


async def test_a_body_that_is_not_a_json_object_is_400(api: Api) -> None:
    for body in (b"{not json", b"[1, 2]"):
        response = await api.post(body)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_json")
    await api.assert_nothing_written()


async def test_a_reused_key_with_another_payload_is_409_and_changes_nothing(api: Api) -> None:
    first = notification(api.tenant)
    assert (await api.post(first)).status_code == 202
    before = await api.inbox()
    changed = {**first, "payload": {**first["payload"], "urgent": True}}
    response = await api.post(changed)
    assert response.status_code == 409, response.text
    assert (response.json()["error"], response.json()["field"]) == ("dedupe_key_conflict", "dedupe_key")
    other_producer = await api.post(first, TOOLS)  # the same fact, but not this producer's to replay
    assert other_producer.status_code == 409
    assert await api.inbox() == before
    assert await api.pipeline.queue.depth() == 1


async def test_an_event_id_reused_under_another_key_is_409(api: Api) -> None:
    first = {**notification(api.tenant), "event_id": new_id("evt")}
    assert (await api.post(first)).status_code == 202
    again = {**notification(api.tenant, key="desktop:other"), "event_id": first["event_id"]}
    response = await api.post(again)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "event_id_conflict"
    assert len(await api.inbox()) == 1


async def test_the_served_openapi_document_is_the_one_in_the_repository(api: Api) -> None:
    response = await api.http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads((SCHEMAS / OPENAPI_FILE).read_text())
    assert response.json()["openapi"].startswith("3.1")
