"""Real worker processes (the `studiovault` console script) for crash and scale-out tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cli"]


def pipeline_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SV_")}
    env.update({
        "SV_DATABASE_URL": database_url, "SV_REDIS_URL": redis_url, "SV_QUEUE_NAME": "test:events",
        "SV_POLL_DELAY": "0.01", "SV_JOB_TIMEOUT": "1", "SV_BACKOFF_BASE": "0.01", "SV_BACKOFF_CAP": "0.2",
        "SV_REDRIVE_GRACE": "0", "SV_LOG_JSON": "true", "PYTHONPATH": str(ROOT), "COLUMNS": "300",
        "SV_SCHEDULED_JOBS": "false", "SV_SHUTDOWN_GRACE": "3",
    })
    env.update(extra)
    return env


@contextmanager
def worker_process(env: dict[str, str], log_path: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`studiovault worker --router <sample router>`; stderr (JSON logs) goes to `log_path`."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*CLI, "worker", "--router", "tests.support.sample_events:ROUTER", *args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`studiovault <args>` in the background; its stderr (JSON logs) appended to `log`."""
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen([*CLI, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)


def stop(proc: subprocess.Popen[bytes], within: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after `within` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def json_logs(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines
