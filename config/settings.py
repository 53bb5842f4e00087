"""The one settings object every process reads once, at start-up (`load_settings`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from config.sections import (
    BillingSettings,
    DatabaseSettings,
    GatewaySettings,
    IngressSettings,
    LogSettings,
    NotifySettings,
    ObservabilitySettings,
    QueueSettings,
    Section,
    WorkerSettings,
)


class Settings(BaseModel):
    """All configuration, in sections; `SV_<FIELD>` sets a field of whichever section owns it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
    gateways: GatewaySettings = Field(default_factory=GatewaySettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)

    SECTIONS: ClassVar[dict[str, type[Section]]] = {
        "database": DatabaseSettings, "queue": QueueSettings, "worker": WorkerSettings,
        "billing": BillingSettings, "ingress": IngressSettings, "gateways": GatewaySettings,
        "notify": NotifySettings, "log": LogSettings, "observability": ObservabilitySettings,
    }

    # A unit of work on D1 is two dependent round trips to Cloudflare, on SQLite a fraction of a
    # millisecond; what hides the distance is jobs in flight (Little's law). Measured with 25 ms added
    # each way (README, Performance): one worker kept 0.32x of its zero-latency rate with 50 jobs in
    # flight and 0.65x with 200, and at no distance 200 was no slower.
    D1_MAX_JOBS: ClassVar[int] = 200

    @property
    def max_jobs(self) -> int:
        """A worker's concurrent jobs: `SV_MAX_JOBS` when set, else the engine's default (50 on a
        SQLite file, `D1_MAX_JOBS` on D1)."""
        if "max_jobs" in self.worker.model_fields_set or not self.database.is_d1:
            return self.worker.max_jobs
        return self.D1_MAX_JOBS

    @classmethod
    def section_of(cls, field: str) -> str:
        """The section that owns `field` (KeyError when none does)."""
        for name, section in cls.SECTIONS.items():
            if field in section.model_fields:
                return name
        raise KeyError(field)

    @classmethod
    def from_fields(cls, values: Mapping[str, Any] | None = None, **fields: Any) -> Settings:
        """Settings from flat field names (`max_jobs=10`), each routed to its section; for tests and tools."""
        nested: dict[str, dict[str, Any]] = {}
        for name, value in {**(values or {}), **fields}.items():
            nested.setdefault(cls.section_of(name), {})[name] = value
        return cls.model_validate(nested)

    def replace(self, **fields: Any) -> Settings:
        """A copy with some flat fields changed, validated again."""
        sections: dict[str, Section] = {name: getattr(self, name) for name in self.SECTIONS}
        for name in {self.section_of(field) for field in fields}:
            current = sections[name]
            updates = {k: v for k, v in fields.items() if k in type(current).model_fields}
            sections[name] = type(current).model_validate({**dict(current), **updates})
        return Settings.model_validate(sections)
