"""Subprocesses the benchmarks start (workers, the ingress, the load generator), and what they measure
about them: peak RSS, and how fast an arq queue drains."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def pipeline_env(database_url: str, redis_url: str, queue: str, **extra: str) -> dict[str, str]:
    """The environment of a `studiovault` worker/ingress: the project's tuned defaults unless overridden."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SV_")}
    env.update({
        "SV_DATABASE_URL": database_url, "SV_REDIS_URL": redis_url, "SV_QUEUE_NAME": queue,
        "SV_LOG_JSON": "true", "SV_BILLING_CRON_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    })
    env.update(extra)
    return env


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the peak resident set size) of a live process, in MB; None if it is gone or not Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def process(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` (stderr to `log_path`); SIGTERM it on exit, SIGKILL if it does not stop in 10 s."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass(frozen=True)
class Drain:
    """A queue drained from `depth_at_start` to empty in `seconds` (after the worker's first progress)."""

    depth_at_start: int
    seconds: float
    waited_for_start: float

    @property
    def per_second(self) -> float:
        return self.depth_at_start / self.seconds if self.seconds > 0 else float("inf")


async def drain_time(
    redis: Redis, queue: str, total: int, procs: list[subprocess.Popen[bytes]], *, within: float, poll: float = 0.005
) -> Drain:
    """Time the queue from the first job finished to empty (arq removes a job from the queue's sorted set
    when it finishes; retried jobs stay in it). Worker start-up (imports, connections) is excluded: the
    clock starts at the first observed decrease, and only the jobs left at that moment are counted."""
    began = time.monotonic()
    deadline = began + within
    first: tuple[float, int] | None = None
    while True:
        depth = int(await redis.zcard(queue))
        now = time.monotonic()
        if first is None and depth < total:
            first = (now, depth)
        if depth == 0 and first is not None:
            return Drain(first[1], now - first[0], first[0] - began)
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a benchmark worker exited with code {dead[0].returncode} before the queue drained")
        if now > deadline:
            raise TimeoutError(f"queue {queue} still holds {depth} of {total} jobs after {within:.0f} s")
        await asyncio.sleep(poll)
