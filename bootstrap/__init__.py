"""The composition root: the one place that turns `config.Settings` into live adapters.

Every process (worker, ingress, CLI) gets its database, queue, HTTP client and notification senders
from here; nothing below this layer opens a connection or reads a setting from the environment.
"""
