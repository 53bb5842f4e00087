"""The D1 bridge Worker under miniflare (workerd's real D1 engine), started and stopped by the tests.

`start_bridge()` installs the bridge's npm dependencies on first use (`npm ci` in d1-bridge/), runs
`node d1-bridge/serve.mjs`, and yields its URL. The server's stdin is a pipe held by this process:
if the test run dies, the pipe closes and the server exits, so no node process is left behind.

`reset_d1()` empties a D1 database (D1 has no "drop database" from a Worker): tests then re-run the
migrator on it. It drops tables, so it needs a connection holding the migration token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from store import Database, Statement

BRIDGE_DIR = Path(__file__).resolve().parents[2] / "d1-bridge"
START_TIMEOUT = 60.0
NPM_CI_TIMEOUT = 600.0
MIN_NODE_MAJOR = 20
INSTALL_HINT = (
    "The D1 tests run the bridge Worker under miniflare, which needs Node.js >= 20 and npm on PATH. "
    "Install them (Debian/Ubuntu: apt-get install nodejs npm, or https://nodejs.org / nvm; "
    "macOS: brew install node), or deselect these tests with: pytest -m 'not d1'."
)


def _node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError(f"{'node' if node is None else 'npm'} is not on PATH. {INSTALL_HINT}")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        raise RuntimeError(f"node {version} is too old. {INSTALL_HINT}")
    return node, npm


def _progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def ensure_npm_installed(npm: str, directory: Path = BRIDGE_DIR) -> None:
    """`npm ci` in `directory` unless miniflare is already installed (once, even with parallel runs)."""
    marker = directory / "node_modules" / "miniflare" / "package.json"
    if marker.exists():
        return
    lock_path = Path(tempfile.gettempdir()) / f"studiovault-{directory.name}-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing right now
        if marker.exists():
            return
        _progress(f"{directory.name}: installing miniflare (npm ci in {directory}) ...")
        started = time.monotonic()
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"`npm ci` in {directory} failed ({done.returncode}); it needs the npm registry once.\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        _progress(f"{directory.name}: npm ci done in {time.monotonic() - started:.1f} s")


def _read_ready_line(proc: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float) -> dict[str, str]:
    """The JSON line (`{"url": ...}`) serve.mjs prints when ready."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise RuntimeError(
                    f"the D1 bridge did not start within {timeout:.0f} s.{_stderr_tail(stderr)}"
                )
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=5)
                code = proc.returncode
                raise RuntimeError(
                    f"the D1 bridge exited ({code}) before it was ready.{_stderr_tail(stderr)}"
                )
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode()
    try:
        ready = json.loads(line)
        str(ready["url"])
        return {str(k): str(v) for k, v in ready.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RuntimeError(f"unexpected first line from serve.mjs: {line!r}{_stderr_tail(stderr)}") from exc


def _stderr_tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    text = stderr.read().decode(errors="replace").strip()
    return f"\n--- serve.mjs stderr ---\n{text[-4000:]}" if text else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Close stdin (serve.mjs then disposes miniflare and exits); escalate if it does not.

    The escalation signals the whole process group: a SIGKILLed node would orphan its workerd child.
    """
    if proc.stdin is not None:
        proc.stdin.close()
    for sig, wait in ((None, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def start_bridge(persist_dir: Path | None, token: str, migration_token: str = "",
                 port: int = 0) -> Iterator[str]:
    """Run the bridge Worker under miniflare; yield its `http://127.0.0.1:PORT` URL.

    `token` is the application's (data statements only), `migration_token` the migrator's (anything);
    either may be a JSON or comma list (a rotation). `persist_dir` keeps the D1 database on disk there;
    None keeps it in memory. `port` 0 picks a free one; a fixed port lets a test stop the bridge and
    start it again where its clients expect it.
    """
    with serve_node(BRIDGE_DIR, "serve.mjs", persist_dir, token, migration_token=migration_token, port=port) as ready:
        yield ready["url"]


@contextmanager
def serve_node(directory: Path, script: str, persist_dir: Path | None, token: str, *, migration_token: str = "",
               port: int = 0) -> Iterator[dict[str, str]]:
    """Run `node <directory>/<script> --port PORT [--persist DIR]` (after `npm ci` there when needed) and
    yield the JSON line it prints when ready; stop it (and its workerd) on the way out."""
    node, npm = _node_and_npm()
    ensure_npm_installed(npm, directory)
    command = [node, str(directory / script), "--port", str(port)]
    if persist_dir is not None:
        command += ["--persist", str(persist_dir)]
    # The tokens go through the environment rather than argv, where `ps` would show them.
    env = {**os.environ, "BRIDGE_TOKEN": token, "MIGRATION_TOKEN": migration_token}
    with tempfile.TemporaryFile(prefix=f"{directory.name}-stderr-") as stderr:
        proc = subprocess.Popen(
            command,
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, so _stop can reach workerd too
        )
        try:
            yield _read_ready_line(proc, stderr, START_TIMEOUT)
        finally:
            _stop(proc)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def reset_d1(db: Database) -> None:
    """Drop every user table, view and trigger, in one batch: the database is empty afterwards.

    `sqlite_*` and `_cf_*` objects belong to SQLite and D1 (D1 refuses to touch them). Triggers and
    views go first, then tables in reverse creation order (children before parents) so the implicit
    DELETE of DROP TABLE passes the foreign-key checks; that DELETE fires no triggers.
    """
    rows = await db.query(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view', 'trigger') ORDER BY rowid"
    )
    objects = [(r["type"], r["name"]) for r in rows if not str(r["name"]).startswith(("sqlite_", "_cf_"))]
    drops = [Statement(f"DROP TRIGGER IF EXISTS {_quote(n)}") for t, n in objects if t == "trigger"]
    drops += [Statement(f"DROP VIEW IF EXISTS {_quote(n)}") for t, n in objects if t == "view"]
    drops += [Statement(f"DROP TABLE IF EXISTS {_quote(n)}") for t, n in reversed(objects) if t == "table"]
    if drops:
        await db.batch(drops)
