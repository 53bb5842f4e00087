"""Producers the pipeline runs itself: the month-end billing close, invoice reminders, the re-drive
sweeper and dead-letter replay. Each publishes through `events.publish.Publisher` (or enqueues through
the `jobqueue.Queue` port) and is idempotent: scheduled jobs may run twice with several workers."""
