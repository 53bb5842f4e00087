"""The routing table: every event type the pipeline defines is applied by exactly one handler."""

from __future__ import annotations

import importlib
import pkgutil

import events
from events.envelope import Event
from handlers.routes import HANDLERS, ROUTER


def defined_event_types() -> set[type[Event]]:
    """Every concrete event class (one with an `event_type`) in the `events` package."""
    for module in pkgutil.iter_modules(events.__path__):
        importlib.import_module(f"events.{module.name}")
    found: set[type[Event]] = set()
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("events.") and "event_type" in vars(cls):
            found.add(cls)
    return found


def test_every_event_type_is_routed_to_exactly_one_handler() -> None:
    defined = defined_event_types()
    assert defined, "no event types found: the discovery is broken"
    assert set(HANDLERS) == defined, (
        f"unrouted: {sorted(c.event_type for c in defined - set(HANDLERS))}; "
        f"routed but not an event of the events package: {sorted(c.__name__ for c in set(HANDLERS) - defined)}")
    types = [cls.event_type for cls in HANDLERS]
    assert len(types) == len(set(types)), "two classes share an event type"


def test_the_registry_parses_what_the_router_routes() -> None:
    for cls in HANDLERS:
        assert (cls.event_type, cls.schema_version) in ROUTER.registry
