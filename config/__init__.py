"""The one configuration: `load_settings()` reads every `SV_` variable once, at process start-up."""

from config.loading import ConfigError, load_settings, unknown_variables, variable
from config.sections import (
    BillingSettings,
    DatabaseSettings,
    GatewaySettings,
    IngressSettings,
    LogSettings,
    NotifySettings,
    ObservabilitySettings,
    QueueSettings,
    WorkerSettings,
    is_fernet_key,
)
from config.settings import Settings

__all__ = [
    "BillingSettings",
    "ConfigError",
    "DatabaseSettings",
    "GatewaySettings",
    "IngressSettings",
    "LogSettings",
    "NotifySettings",
    "ObservabilitySettings",
    "QueueSettings",
    "Settings",
    "WorkerSettings",
    "is_fernet_key",
    "load_settings",
    "unknown_variables",
    "variable",
]
