"""The job-queue port (`Queue`, the feed poller's `FeedCursor`) and their adapters on Redis
(`jobqueue.arq_redis`, `jobqueue.redis_cursor`), side by side."""

from jobqueue.port import FeedCursor, FeedLease, Queue

__all__ = ["FeedCursor", "FeedLease", "Queue"]
