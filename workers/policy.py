"""The failure policy: which errors retry, how long to wait, when an event is dead-lettered."""

from __future__ import annotations

import random
from dataclasses import dataclass

from events.registry import InvalidPayload, UnknownEventType
from handlers.base import Rejected
from store import ConstraintViolation, ParameterLimitExceeded, QueryError


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with "equal jitter": in [d/2, d] where d = min(cap, base * 2^(attempt-1))."""
        ceiling = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        jitter: float = (rng or random).random()
        return ceiling / 2 + jitter * ceiling / 2


def is_permanent(exc: BaseException) -> bool:
    """Errors no retry can fix: the event itself is wrong, or the code's SQL is."""
    return isinstance(
        exc, Rejected | UnknownEventType | InvalidPayload | ConstraintViolation | ParameterLimitExceeded | QueryError
    )


def describe(exc: BaseException) -> str:
    """The reason recorded on a dead or retried event: type and message, never the payload."""
    text = str(exc) if isinstance(exc, Rejected) else f"{type(exc).__name__}: {exc}"
    return text[:2000]
