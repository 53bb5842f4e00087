"""The ingress's view of the accounts: `AccountStore` behind a small in-process cache.

Each lookup (by endpoint key, by gateway account id, the platform's) is kept for `ttl_s` seconds —
misses too, so a flood of requests for unknown keys costs one query per key per TTL — with the
credentials already decrypted: the ingress neither queries the database nor decrypts on every request,
and a rotation, connection or disconnection takes effect within `ttl_s` (5 s by default,
`SV_ACCOUNTS_CACHE_TTL_S`). Concurrent misses for one key share one load.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from gateways.accounts import Account, AccountStore

Loader = Callable[[], Awaitable[Account | None]]


class AccountDirectory:
    def __init__(self, store: AccountStore, ttl_s: float = 5.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.loads = 0  # how many lookups went to the database (for tests and measurements)
        self._entries: OrderedDict[tuple[str, ...], tuple[float, Account | None]] = OrderedDict()
        self._loading: dict[tuple[str, ...], asyncio.Future[Account | None]] = {}

    async def _cached(self, key: tuple[str, ...], load: Loader) -> Account | None:
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Account | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            self.loads += 1
            account = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter re-raises it, nobody else logs it as unhandled
            raise
        finally:
            del self._loading[key]
        future.set_result(account)
        self._entries[key] = (now, account)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return account

    async def by_endpoint_key(self, key: str) -> Account | None:
        if not key or len(key) > 100:
            return None
        return await self._cached(("key", key), lambda: self.store.by_endpoint_key(key))

    async def by_ref(self, gateway: str, account_ref: str) -> Account | None:
        return await self._cached(("ref", gateway, account_ref), lambda: self.store.by_ref(gateway, account_ref))

    async def platform(self, gateway: str) -> Account | None:
        return await self._cached(("platform", gateway), lambda: self.store.platform(gateway))

    def clear(self) -> None:
        self._entries.clear()
