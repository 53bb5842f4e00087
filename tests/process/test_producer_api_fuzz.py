"""schemathesis against the producer API's SERVED OpenAPI document: no 5xx, answers as documented.

The ingress runs as built by the composition root (`bootstrap.ingress.build_app`) under uvicorn, on a
migrated SQLite file and the test Redis. Every generated request is signed with a producer's secret
(a `requests.Session` that signs the exact bytes it sends), so the fuzzing reaches the validation and
the inbox write rather than stopping at 401. Bounded: a fixed number of examples per operation, no
shrinking-time surprises (deadline off, a pytest timeout above).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import schemathesis
import schemathesis.specs.openapi.schemas  # imported at collection: see below
import uvicorn
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from standardwebhooks import Webhook

# schemathesis is a pytest plugin, so pytest rewrites its modules on import. Imported lazily, deep in a call
# stack, the rewrite's ast.parse hit CPython 3.11.7's "AST constructor recursion depth mismatch" (a CPython
# bug, fixed in 3.12): the module above is imported here, at collection, instead.
from bootstrap.ingress import build_app
from config import Settings
from events.ids import new_id
from store.migrate import migrate
from store.sqlite import SqliteDatabase
from tests.support.redis_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]  # a bound on top of the fixed example count
SECRET = "whsec_c2NoZW1hdGhlc2lzLXByb2R1Y2VyLXNlY3JldC0wMDA="
EXAMPLES = 60
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class SigningSession(requests.Session):
    """Signs each prepared request (its final body bytes) with Standard Webhooks, as a producer does."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        msg_id = f"msg_{new_id('evt')[4:]}"
        now = datetime.now(UTC)
        request.headers["webhook-id"] = msg_id
        request.headers["webhook-timestamp"] = str(int(now.timestamp()))
        request.headers["webhook-signature"] = Webhook(SECRET).sign(msg_id, now, raw.decode("utf-8", "replace"))
        return super().send(request, **kwargs)


@pytest.fixture(scope="module")
def ingress_url(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    path = tmp_path_factory.mktemp("fuzz") / "studiovault.db"

    async def migrated() -> None:
        db = await SqliteDatabase.open(path)
        await migrate(db)
        await db.close()

    asyncio.run(migrated())
    config = Settings.from_fields(database_url=f"sqlite:///{path}", redis_url=redis_url, queue_name="test:fuzz",
                                  producer_secrets={"fuzzer": [SecretStr(SECRET)]}, log_json=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(config), host="127.0.0.1", port=port, log_config=None,
                                           ws="none", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ingress did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def session() -> Iterator[SigningSession]:
    with SigningSession() as signing:
        yield signing


def _operations(url: str) -> list[Any]:
    """The operations of the document as the ingress serves it (not the file: a test elsewhere checks that
    they are equal). schemathesis's pytest plugin (`from_fixture`) reads a private pytest attribute that
    pytest 9.2 no longer has, so the strategies are driven with hypothesis directly."""
    loaded = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_signed_requests_generated_from_the_served_document_get_no_5xx(
    ingress_url: str, session: SigningSession, mode: GenerationMode
) -> None:
    operations = _operations(ingress_url)
    assert sorted(f"{op.method.upper()} {op.path}" for op in operations) == ["GET /events/{event_id}", "POST /events"]
    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=ingress_url, session=session, timeout=10)
            statuses[response.status_code] += 1
            assert response.status_code < 500, response.text
            case.validate_response(response, checks=CHECKS)

        check()
    assert statuses.get(401, 0) < statuses.total(), statuses  # signed: the fuzzing got past authentication
    if mode is GenerationMode.POSITIVE:
        assert statuses[202] > 0, statuses  # and some generated events were accepted and written
