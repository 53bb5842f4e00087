"""Sample a worker with py-spy while it applies events; summarise where its time goes.

py-spy's raw (collapsed-stack) output is one line per distinct stack, `frame;frame;...;leaf COUNT`.
Idle samples (waiting in epoll) are left out by py-spy, so the counts are time spent working.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.core import Run
from bench.procs import ROOT

PY_SPY = Path(sys.executable).parent / "py-spy"
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _py_spy() -> str | None:
    return str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")


async def profile_worker(run: Run, pid: int, seconds: float, *, redis_url: str, queue: str, total: int) -> None:
    """Sample the worker for `seconds` once it has started on the queue (results: run.extra)."""
    redis = Redis.from_url(redis_url)
    try:
        while int(await redis.zcard(queue)) >= total:  # noqa: ASYNC110 - polling Redis, no local event
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()
    await profile_pid(run, pid, seconds, "worker")


async def profile_pid(run: Run, pid: int, seconds: float, role: str) -> None:
    """Record `seconds` of py-spy samples of `pid`; the summary goes to run.extra[f"profile_{role}"]."""
    key = f"profile_{role}"
    binary = _py_spy()
    if binary is None:
        run.extra[key] = {"error": "py-spy is not installed"}
        return
    out = ROOT / "bench" / "results" / f"profile-{role}.txt"
    proc = await asyncio.create_subprocess_exec(
        binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
        "--format", "raw", "--output", str(out), "--nonblocking",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0 or not out.exists():
        run.extra[key] = {"error": f"py-spy exited {proc.returncode}: {err.decode()[-500:]}"}
        return
    summary = summarise(out.read_text())
    summary["file"] = str(out.relative_to(ROOT))
    run.extra[key] = summary
    run.log(f"  profile ({role}): {summary['samples']} samples; top self time: "
            + ", ".join(f"{f['frame']} {f['share']:.0%}" for f in summary["self"][:5]))


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path.replace(str(ROOT) + '/', '')})"


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    """Self time per leaf frame, inclusive time per frame and per package, as shares of all samples."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        packages[_package(frames[-1])] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": f, "samples": n, "share": round(n / total, 3)} for f, n in counter.most_common(top)]

    # Inclusive time without the process's main call chain (frames in nearly every sample say nothing).
    below_main = Counter({f: n for f, n in inclusive.items() if n < 0.9 * total})
    return {"samples": total, "self": table(leaf), "inclusive": table(below_main), "self_by_package": table(packages)}


def _package(frame: str) -> str:
    match = re.search(r"\(([^)]*)\)$", frame)
    path = match[1] if match else frame
    if path.startswith("<"):
        return path
    return path.split("/", 1)[0] if "/" in path else path
