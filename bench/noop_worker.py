"""An arq worker whose only job does nothing: the ceiling of one arq worker process.

    python -m bench.noop_worker --redis redis://127.0.0.1:PORT/0 --queue Q --poll-delay 0.01 --max-jobs 50

Same JSON job serializer and `keep_result=0` as the pipeline's worker, so the only difference from
`studiovault worker` is the job's body (nothing here, the unit of work there).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from arq import func
from arq.connections import RedisSettings
from arq.worker import Worker

from jobqueue.arq_redis import deserialize, serialize

NOOP_JOB = "noop"


async def noop(ctx: dict[str, Any], *args: Any) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--poll-delay", type=float, default=0.01)
    parser.add_argument("--max-jobs", type=int, default=50)
    asyncio.run(_run(parser.parse_args()))


async def _run(args: argparse.Namespace) -> None:
    # Built inside the running loop: arq's Worker binds to the loop current at construction.
    worker = Worker(
        functions=[func(noop, name=NOOP_JOB, keep_result=0)],
        redis_settings=RedisSettings.from_dsn(args.redis),
        queue_name=args.queue,
        poll_delay=args.poll_delay,
        max_jobs=args.max_jobs,
        keep_result=0,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        pass
    finally:
        await worker.close()


if __name__ == "__main__":
    main()
