"""Failpoints for crash testing: `SV_FAILPOINTS=after_batch` makes a worker SIGKILL itself there.

The kill tests start a real worker process with a failpoint set, then restart it without, and check
that no event is lost or applied twice. Unset (always, in production) this costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(filter(None, os.environ.get("SV_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
