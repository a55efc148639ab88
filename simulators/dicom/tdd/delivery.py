"""What the TDW-II workflow needs from a delivery, as a small protocol it can be tested against.

``Deliver`` is any callable ``(request, stop, progress) -> SessionOutcome``. It must block until the
session ends, call ``progress`` as beams start and meterset accumulates (from any thread), and stop the
beam when ``stop`` fires (``stop.bind`` gives it the function to call). :func:`session_deliver` plugs in
the real :class:`simulators.devices.session.DeliverySession`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from simulators.devices.session import SessionOutcome, SessionRequest

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryProgress:
    """Where the delivery stands: the beam (unit) number in progress and the session fraction done."""

    beam_number: int
    beam_index: int  # 0-based position of the beam among this session's beams
    beam_count: int
    fraction_done: float  # 0..1 of the session's total meterset


ProgressCallback = Callable[[DeliveryProgress], None]


class StopToken:
    """A thread-safe stop request (from a UPS Cancel Requested event, or a device shutdown).

    The deliverer binds the function that really stops its beam; a request made before binding is
    delivered at bind time, so no request is lost.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested: tuple[str, str] | None = None
        self._handlers: list[Callable[[str, str], None]] = []
        self.reason = ""

    def request(self, status: str = "OPERATOR", code: str = "", reason: str = "") -> bool:
        """Ask for the beam to stop; False if a stop was already requested (the first one wins)."""
        with self._lock:
            if self._requested is not None:
                return False
            self._requested = (status, code)
            self.reason = reason
            handlers = list(self._handlers)
        for handler in handlers:
            self._call(handler, status, code)
        return True

    def bind(self, handler: Callable[[str, str], None]) -> None:
        """Register ``handler(status, code)``; called at once if a stop was already requested."""
        with self._lock:
            self._handlers.append(handler)
            pending = self._requested
        if pending is not None:
            self._call(handler, *pending)

    @staticmethod
    def _call(handler: Callable[[str, str], None], status: str, code: str) -> None:
        try:
            handler(status, code)
        except Exception as exc:  # a failing handler must not hide the request from the others
            LOG.error("stop handler failed: %s", exc)

    @property
    def requested(self) -> bool:
        with self._lock:
            return self._requested is not None

    @property
    def status_code(self) -> tuple[str, str] | None:
        with self._lock:
            return self._requested


class Deliver(Protocol):
    def __call__(
        self, request: SessionRequest, stop: StopToken, progress: ProgressCallback
    ) -> SessionOutcome: ...


def session_deliver(request: SessionRequest, stop: StopToken, progress: ProgressCallback) -> SessionOutcome:
    """Run a real :class:`DeliverySession` (imported lazily: it is being written in parallel).

    Uses ``DeliverySession(request).run()``, ``.request_stop(status, code)`` and ``.bus`` (subscribe to
    UnitStarted / MetersetProgress to report progress). Event field names are read defensively.
    """
    from simulators.devices.session import DeliverySession  # lazy: written in parallel

    session = DeliverySession(request)
    stop.bind(lambda status, code: session.request_stop(status=status, code=code))
    tracker = _ProgressTracker(progress)
    bus = getattr(session, "bus", None)
    if bus is not None:
        try:
            bus.subscribe(tracker.on_event)
        except Exception as exc:  # progress is informative; delivery goes on without it
            LOG.warning("cannot subscribe to the session bus, no progress updates: %s", exc)
    return session.run()


class _ProgressTracker:
    """Turns session bus events into :class:`DeliveryProgress` calls (beam starts, meterset steps)."""

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress
        self.beams: list[int] = []
        self.total = 0.0
        self.done_before: dict[int, float] = {}
        self.current: int | None = None

    def on_event(self, event: object) -> None:
        name = type(event).__name__
        number = getattr(event, "unit_number", getattr(event, "number", None))
        if number is None:
            return
        if name == "UnitStarted":
            self.current = int(number)
            if self.current not in self.beams:
                self.beams.append(self.current)
            self._emit(float(getattr(event, "delivered_meterset", 0.0) or 0.0), event)
        elif name in ("MetersetProgress", "UnitFinished"):
            self.current = int(number)
            self._emit(float(getattr(event, "delivered_meterset", 0.0) or 0.0), event)

    def _emit(self, delivered: float, event: object) -> None:
        total = float(getattr(event, "session_total_meterset", 0.0) or 0.0)
        before = float(getattr(event, "session_delivered_before", 0.0) or 0.0)
        fraction = (before + delivered) / total if total > 0 else 0.0
        count = int(getattr(event, "unit_count", len(self.beams)) or len(self.beams))
        self.progress(
            DeliveryProgress(
                beam_number=int(self.current or 0),
                beam_index=self.beams.index(self.current) if self.current in self.beams else 0,
                beam_count=max(count, 1),
                fraction_done=min(max(fraction, 0.0), 1.0),
            )
        )
