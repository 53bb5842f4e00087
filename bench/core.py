"""The benchmark run: its sizes, the figures it records, progress lines, and "not available" results."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does. `--quick` uses the small set."""

    noop_jobs: int
    noop_jobs_default: int
    sqlite_batches: int
    redis_requests: int
    apply_events: int
    apply_events_default: int
    hot_events: int
    d1_events: int
    ingress_seconds: float
    billing_orgs: tuple[int, ...]
    billing_media_per_org: int
    billing_notifications_per_org: int
    pickup_events: int = 100
    pickup_inbox_rows: int = 100_000
    latency_seconds: float = 10.0  # each phase of `latency`
    scaleout_events: int = 1_000  # events drained per configuration of `scaleout`
    scaleout_paced: int = 150  # events offered open-loop per configuration (end-to-end latency)
    scaleout_delays_ms: tuple[int, ...] = (0, 25, 100)  # added each way by the proxy in front of D1


FULL = Sizes(
    noop_jobs=5_000, noop_jobs_default=1_500, sqlite_batches=3_000, redis_requests=100_000,
    apply_events=2_500, apply_events_default=1_000, hot_events=50, d1_events=300, ingress_seconds=5.0,
    billing_orgs=(1_000, 10_000), billing_media_per_org=100, billing_notifications_per_org=10,
)
QUICK = Sizes(
    noop_jobs=2_000, noop_jobs_default=600, sqlite_batches=1_000, redis_requests=20_000,
    apply_events=500, apply_events_default=150, hot_events=50, d1_events=120, ingress_seconds=2.0,
    billing_orgs=(100, 1_000), billing_media_per_org=100, billing_notifications_per_org=10,
    pickup_events=40, pickup_inbox_rows=100_000, latency_seconds=4.0, scaleout_events=300, scaleout_paced=40,
)


@dataclass
class Figure:
    key: str
    label: str
    value: float | None
    unit: str
    note: str = ""


class NotAvailable(Exception):
    """A scenario cannot run here (a dependency has not landed, a tool is missing): say why, go on."""


@dataclass
class Run:
    """State shared by every scenario of one `python -m bench` run."""

    quick: bool
    workdir: Path
    redis_url: str
    console: Console
    sizes: Sizes
    profile: bool = False
    figures: dict[str, Figure] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # Per process role (worker, ingress), the highest VmHWM seen in each scenario.
    peak_rss_by_scenario: dict[str, dict[str, float]] = field(default_factory=dict)
    scenario: str = ""  # the one running
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:7.1f}s[/dim] {message}", highlight=False)

    def record(self, key: str, label: str, value: float | None, unit: str, note: str = "") -> None:
        self.figures[key] = Figure(key, label, None if value is None else round(value, 3), unit, note)
        shown = "n/a" if value is None else f"{value:,.2f}"
        self.log(f"  [bold]{label}[/bold]: {shown} {unit}{f'  ({note})' if note else ''}")

    def value(self, key: str) -> float | None:
        figure = self.figures.get(key)
        return figure.value if figure else None

    def note_rss(self, role: str, megabytes: float | None) -> None:
        """Keep the highest peak RSS seen for a process role (worker, ingress) in the running scenario."""
        if megabytes is not None:
            peaks = self.peak_rss_by_scenario.setdefault(role, {})
            peaks[self.scenario] = max(megabytes, peaks.get(self.scenario, 0.0))

    def peak_rss(self, role: str) -> tuple[float, str] | None:
        """The highest peak RSS of a role over the run, and the scenarios' peaks as a note."""
        peaks = self.peak_rss_by_scenario.get(role)
        if not peaks:
            return None
        return max(peaks.values()), ", ".join(f"{name} {mb:.1f}" for name, mb in peaks.items())

    def subdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def figures_json(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.figures.values()]


def route_logs_to(path: Path) -> None:
    """Configure logging in this process as a worker's (JSON at INFO), but into `path`, not the console."""
    from bootstrap.logging import configure_logging  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.open("a")
    with contextlib.redirect_stderr(log):
        configure_logging("INFO", True)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
