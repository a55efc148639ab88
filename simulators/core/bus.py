"""The event bus: the engine publishes, subscribers (console, progress N-SET, logs, scenarios) listen.

A subscriber that raises never crashes the simulation: the error is logged and counted, and the other
subscribers still get the event. Callbacks run on the publishing thread (the sim thread for engine
events); subscribers that do I/O should hand the event to their own thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

Callback = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class _Subscription:
    callback: Callback
    event_types: tuple[type, ...] | None


class Subscription:
    """Handle returned by :meth:`EventBus.subscribe`; call it (or :meth:`unsubscribe`) to stop."""

    def __init__(self, bus: EventBus, entry: _Subscription) -> None:
        self._bus = bus
        self._entry = entry

    def unsubscribe(self) -> None:
        self._bus._remove(self._entry)

    def __call__(self) -> None:
        self.unsubscribe()


class EventBus:
    """Synchronous publish/subscribe with per-type filtering and error isolation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[_Subscription, ...] = ()
        self.error_count = 0

    def subscribe(self, callback: Callback, event_types: Iterable[type] | None = None) -> Subscription:
        """Call ``callback(event)`` for every event (or only instances of ``event_types``)."""
        types = tuple(event_types) if event_types is not None else None
        entry = _Subscription(callback, types)
        with self._lock:
            self._subs = (*self._subs, entry)
        return Subscription(self, entry)

    def _remove(self, entry: _Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not entry)

    def publish(self, event: Any) -> None:
        """Deliver ``event`` to every matching subscriber; log and skip any that raises."""
        for sub in self._subs:  # immutable snapshot: (un)subscribing inside a callback is safe
            if sub.event_types is not None and not isinstance(event, sub.event_types):
                continue
            try:
                sub.callback(event)
            except Exception:
                self.error_count += 1
                logger.exception(
                    "event bus subscriber %r failed on %s; delivery goes on",
                    sub.callback,
                    type(event).__name__,
                )


class EventRecorder:
    """A subscriber that keeps every event it receives (tests, golden traces)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def of_type(self, *types: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, types)]

    def type_names(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def to_dicts(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events]
