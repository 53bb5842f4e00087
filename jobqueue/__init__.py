"""The job-queue port (`Queue`) and its adapter (arq on Redis, `jobqueue.arq_redis`), side by side."""

from jobqueue.port import Queue

__all__ = ["Queue"]
