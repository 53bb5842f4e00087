"""Failpoints for crash testing: with `SV_FAILPOINTS=after_batch` a worker SIGKILLs itself there.

The kill tests start a real worker process with a failpoint set, then restart it without, and check
that no event is lost or applied twice. The points are `before_batch` and `after_batch` (around the
unit of work's batch) and `after_send` (a notification provider accepted a message; installed by the
worker around its senders, so handlers know nothing of it). Unset, as always in production, a check
is one set lookup.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from providers.port import Channel, OutboundMessage, Sender, SendResult

POINTS = frozenset({"before_batch", "after_batch", "after_send"})


@dataclass(frozen=True)
class Failpoints:
    active: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.active - POINTS
        if unknown:
            raise ValueError(f"unknown failpoints {sorted(unknown)}; known: {sorted(POINTS)}")

    def hit(self, name: str) -> None:
        if name in self.active:
            os.kill(os.getpid(), signal.SIGKILL)

    def around(self, sender: Sender) -> Sender:
        """`sender`, killing the process right after a send the provider accepted (`after_send`)."""
        return _KillAfterSend(sender, self) if "after_send" in self.active else sender


class _KillAfterSend:
    def __init__(self, inner: Sender, failpoints: Failpoints) -> None:
        self.inner = inner
        self.channel: Channel = inner.channel
        self.failpoints = failpoints

    async def send(self, message: OutboundMessage) -> SendResult:
        result = await self.inner.send(message)
        self.failpoints.hit("after_send")
        return result
