"""The `Queue` port: where accepted events go to be applied. Producers and the re-drive use only this."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Queue(Protocol):
    """A job queue keyed by event id: enqueuing an id the queue already holds is refused (False)."""

    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        """Enqueue the envelope's apply job; False when the queue already holds this event id."""
        ...

    async def depth(self) -> int:
        """Jobs waiting or scheduled."""
        ...
