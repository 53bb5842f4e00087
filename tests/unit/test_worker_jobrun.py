"""`PipelineWorker` runs claimed jobs itself (`workers.jobrun`, arq 0.28's `run_job` after its first round
trip): what that runner does not do, a worker refuses to be built with, rather than silently ignore.

Built inside a running loop, as the worker is: outside one, arq's `Worker` makes an event loop of its own,
which nothing here would close (its self-pipe then leaks into a later test's warnings)."""

from __future__ import annotations

from typing import Any

import pytest
from arq import func

from workers.lifecycle import PipelineWorker


async def _job(ctx: dict[str, Any]) -> None:
    return None


async def _hook(ctx: dict[str, Any]) -> None:
    return None


@pytest.mark.parametrize("option", [{"allow_abort_jobs": True}, {"on_job_start": _hook}, {"on_job_end": _hook},
                                    {"after_job_end": _hook}])
async def test_a_worker_refuses_what_its_job_runner_does_not_do(option: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="PipelineWorker does not support"):
        PipelineWorker(functions=[func(_job, name="job")], **option)


async def test_a_plain_worker_is_built() -> None:
    worker = PipelineWorker(functions=[func(_job, name="job")])
    assert worker.wake is None  # the wake listener starts with the worker's main loop, not before
