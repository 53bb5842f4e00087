"""The registry every event type joins: turns an envelope's `type` and payload into its typed event."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from events.envelope import Envelope, Event


class UnknownEventType(ValueError):
    """No registered event has this type and schema version."""


class InvalidPayload(ValueError):
    """The payload does not validate against its event type's model."""


class EventRegistry:
    """Event classes by `(type, schema_version)`."""

    def __init__(self, event_classes: Iterable[type[Event]] = ()) -> None:
        self._classes: dict[tuple[str, int], type[Event]] = {}
        for cls in event_classes:
            self.register(cls)

    def register(self, cls: type[Event]) -> type[Event]:
        key = (cls.event_type, cls.schema_version)
        if key in self._classes and self._classes[key] is not cls:
            raise ValueError(f"event type {key[0]!r} v{key[1]} is registered twice")
        self._classes[key] = cls
        return cls

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._classes

    def types(self) -> list[type[Event]]:
        return list(self._classes.values())

    def get(self, event_type: str, schema_version: int) -> type[Event] | None:
        return self._classes.get((event_type, schema_version))

    def versions(self, event_type: str) -> list[int]:
        """The registered schema versions of `event_type`, ascending (empty: unknown type)."""
        return sorted(v for t, v in self._classes if t == event_type)

    def parse(self, envelope: Envelope) -> Event:
        """The typed event inside `envelope`; raises `UnknownEventType` or `InvalidPayload`."""
        cls = self._classes.get((envelope.type, envelope.schema_version))
        if cls is None:
            known = ", ".join(f"{t} v{v}" for t, v in sorted(self._classes))
            raise UnknownEventType(f"unknown event type {envelope.type!r} v{envelope.schema_version}; known: {known}")
        try:
            return cls.model_validate(envelope.payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidPayload(f"{envelope.type} payload is invalid: {problems}") from exc
