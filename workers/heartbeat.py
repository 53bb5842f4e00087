"""A worker's heartbeat: a file touched after each successful poll of Redis (at most once a second).

`studiovault worker --check` (a container healthcheck, a supervisor's probe) fails when the file is
older than `SV_HEARTBEAT_MAX_AGE_S`: a worker that is alive but no longer polling — stuck, or cut off
from Redis — is told apart from one that works. The file is local, so the check needs no Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heartbeat:
    path: Path
    every_s: float = 1.0
    _last: float = field(default=0.0, init=False)

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        try:
            self.path.touch()
        except OSError:  # a full or read-only disk must not stop the worker; the check will say so
            self._last = now + 10.0

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat, or None when there is no heartbeat file."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return max((now if now is not None else time.time()) - modified, 0.0)
