"""Fixtures the notification and provider tests share: the local provider servers (one set per module),
an arq Redis client on the suite's redis-server, and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from arq.connections import ArqRedis

from jobqueue.arq_redis import connect
from tests.support.provider_servers import ProviderServers, provider_servers


@pytest.fixture(scope="module")
def servers() -> Iterator[ProviderServers]:
    with provider_servers() as running:
        yield running


@pytest.fixture
async def arq_redis(redis_url: str, redis: object) -> AsyncIterator[ArqRedis]:
    client = await connect(redis_url, "test:events")
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
