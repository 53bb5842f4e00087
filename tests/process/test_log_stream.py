"""In JSON mode every line a process writes is JSON: our logs, uvicorn's, arq's, warnings and crashes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from store.sqlite import SqliteDatabase
from tests.support.processes import CLI, ROOT, pipeline_env, worker_process
from tests.support.redis_server import free_port

SCRIPT = """
import logging, warnings
from bootstrap.logging import configure_logging
configure_logging("INFO", json=True)
logging.getLogger("uvicorn.error").info("Started server process")
warnings.warn("a deprecated call", DeprecationWarning, stacklevel=1)
raise RuntimeError("crashed on purpose")
"""


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\nwhole output:\n{text}")
    return parsed


def test_warnings_and_an_uncaught_exception_are_json_lines() -> None:
    done = subprocess.run([sys.executable, "-W", "always", "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 1
    lines = json_lines(done.stderr)
    events = [str(line["event"]) for line in lines]
    assert "Started server process" in events
    assert any("a deprecated call" in event for event in events)
    crash = lines[-1]
    assert crash["event"] == "uncaught_exception"
    assert crash["level"] == "critical"
    assert crash["exception"][0]["exc_value"] == "crashed on purpose"  # type: ignore[index]


@pytest.mark.slow
def test_a_worker_and_the_ingress_write_only_json_from_start_to_stop(sqlite_db: SqliteDatabase, redis_url: str,
                                                                    tmp_path: Path) -> None:
    env = pipeline_env(f"sqlite:///{sqlite_db.path}", redis_url)
    port = free_port()
    worker_log, ingress_log = tmp_path / "worker.log", tmp_path / "ingress.log"
    with worker_process(env, worker_log) as worker, ingress_log.open("ab") as out:
        ingress = subprocess.Popen([*CLI, "ingress", "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=out)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, ingress_log.read_text()
                time.sleep(0.1)
            assert httpx.post(f"http://127.0.0.1:{port}/webhooks/razorpay", content=b"{}", timeout=5).status_code
        finally:
            ingress.send_signal(signal.SIGTERM)
            ingress.wait(timeout=20)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    worker_events = [line["event"] for line in json_lines(worker_log.read_text())]
    ingress_events = [line["event"] for line in json_lines(ingress_log.read_text())]
    assert "worker_ready" in worker_events
    assert "worker_stopped" in worker_events
    assert "ingress_started" in ingress_events
    assert any("Uvicorn running" in str(event) for event in ingress_events)
