"""What operators measure and follow: Prometheus metrics, the shared pipeline-state snapshot, and
OpenTelemetry tracing (off unless configured).

A layer below `ingress` and `workers` (they record into it) and above `producers | readmodels` and
`handlers` (it reads their results: plans, outcomes, the inbox read model). It opens no connection
and imports no adapter: the composition root (`bootstrap/`) wraps the real database, queue, rate
limiter and senders with the instruments defined here, and serves the worker's registry over HTTP.
"""
