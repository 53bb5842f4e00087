"""The benchmark machinery, run briefly so `python -m bench` cannot rot: the SQLite and arq no-op ceilings
on tiny sizes, the target verdicts, the profile summary and the CLI's --help."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bench.ceilings import noop_ceiling, sqlite_commits_per_second
from bench.core import QUICK, Run, percentile
from bench.profile import summarise
from bench.report import add_derived, evaluate
from tests.support.processes import ROOT


def _run(tmp_path: Path, redis_url: str) -> Run:
    return Run(quick=True, workdir=tmp_path, redis_url=redis_url, console=Console(file=io.StringIO()), sizes=QUICK)


async def test_sqlite_ceiling_commits_batches_through_the_adapter(tmp_path: Path) -> None:
    assert await sqlite_commits_per_second(_run(tmp_path, "redis://unused"), 20) > 0


@pytest.mark.slow
async def test_noop_ceiling_drains_fifty_jobs_with_a_worker_process(tmp_path: Path, redis_url: str) -> None:
    assert await noop_ceiling(_run(tmp_path, redis_url), 50, 0.01, 50, name="smoke") > 0


def test_targets_report_pass_and_miss_with_their_margin(tmp_path: Path) -> None:
    run = _run(tmp_path, "redis://unused")
    run.record("apply.sqlite.1w", "apply", 1500.0, "events/s")
    run.record("ceiling.arq_noop_tuned", "noop", 2000.0, "jobs/s")
    run.record("ingress.fixed_p99_ms", "p99", 12.5, "ms")
    add_derived(run)
    verdicts = {t["figure"]: t for t in evaluate(run)}
    assert run.value("ratio.apply_1w_vs_noop_tuned") == 0.75
    assert (verdicts["ratio.apply_1w_vs_noop_tuned"]["verdict"], verdicts["ratio.apply_1w_vs_noop_tuned"]["margin"]) \
        == ("PASS", 0.25)  # 0.75 against 0.6: 25% headroom
    assert (verdicts["ingress.fixed_p99_ms"]["verdict"], verdicts["ingress.fixed_p99_ms"]["margin"]) \
        == ("MISS", -0.25)  # 12.5 ms against 10 ms: 25% over
    assert verdicts["latency.50pct.p99_ms"]["verdict"] == "n/a"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile([7.0], 99), percentile([], 50)) \
        == (50.0, 99.0, 7.0, None)


def test_profile_summary_counts_self_and_inclusive_time() -> None:
    raw = ("main (app.py:1);apply (workers/apply.py:10);batch (store/sqlite.py:5) 3\n"
           "main (app.py:1);apply (workers/apply.py:10) 1\n")
    summary = summarise(raw)
    assert summary["samples"] == 4
    assert summary["self"][0] == {"frame": "batch (store/sqlite.py)", "samples": 3, "share": 0.75}


def test_bench_help_lists_the_scenarios() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, check=True)
    assert "--quick" in done.stdout
    assert "ingress" in done.stdout
    assert "latency" in done.stdout
    assert "scaleout" in done.stdout


def test_pickup_latencies_are_measured_per_event_with_old_ids_apart(tmp_path: Path) -> None:
    from bench.pickup import Recorder, Sample, record_latencies  # noqa: PLC0415

    run = _run(tmp_path, "redis://unused")
    rec, sample = Recorder(), Sample()
    for i, (enqueued_ms, applied_ms) in enumerate([(100, 150), (200, 260), (300, 390), (50, 70)]):
        event_id = f"evt_{i}"
        sample.committed[event_id] = 1000.0
        rec.enqueued[event_id] = 1000.0 + enqueued_ms / 1000
        rec.applied[event_id] = 1000.0 + applied_ms / 1000
        if i % 2:
            sample.old_ids.add(event_id)
    figures = record_latencies(run, "pickup.test", "test", sample, rec)
    assert round(figures["enqueued_p99_ms"]) == 300
    assert round(figures["applied_p50_ms"]) == 150
    assert round(figures["old_id_enqueued_p99_ms"]) == 200  # events 1 and 3: 200 ms and 50 ms
    assert run.value("pickup.test.enqueued_p99_ms") is not None


def test_scrape_windows_compare_each_scraped_window_with_its_neighbours_and_cpu_per_event() -> None:
    from bench.scrape import Windows  # noqa: PLC0415

    windows = Windows()
    for scraped, events, cpu in ((False, 1000, 2.0), (True, 900, 1.98), (False, 800, 1.6), (True, 800, 1.6),
                                 (False, 800, 1.6)):
        windows.add(scraped, events, 2.0, cpu)
    assert windows.local_ratios() == [900 / 900, 800 / 800]  # drift from 500/s to 400/s cancels
    assert windows.rate(False) == 2600 / 6.0
    assert windows.cpu_ms_per_event(False) == pytest.approx(5.2 * 1000 / 2600)
    assert windows.cpu_ms_per_event(True) == pytest.approx(3.58 * 1000 / 1700)
