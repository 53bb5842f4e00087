"""The job-queue port (`Queue`, the feed poller's `FeedCursor`) and their adapters on Redis
(`jobqueue.arq_redis`, `jobqueue.redis_cursor`), side by side."""

from jobqueue.port import BatchQueue, FeedCursor, FeedLease, Job, Queue, enqueue_all

__all__ = ["BatchQueue", "FeedCursor", "FeedLease", "Job", "Queue", "enqueue_all"]
