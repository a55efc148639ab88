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


def session_deliver(
    request: SessionRequest,
    stop: StopToken,
    progress: ProgressCallback,
    *,
    session_options: dict | None = None,
) -> SessionOutcome:
    """Run a real :class:`simulators.devices.session.DeliverySession` (fast clock, blocking).

    Needs from it: ``DeliverySession(request)``, ``.run() -> SessionOutcome``, ``.request_stop(status,
    code)`` (thread-safe, also before the run starts) and ``.bus`` publishing ``UnitStarted`` and
    ``MetersetProgress`` (``unit_number``, ``session_fraction``). ``session_options`` go to the
    DeliverySession (``bus``, ``engine_hooks``, ``engine_options``: how scenarios inject faults).
    """
    from simulators.core.events import MetersetProgress, UnitStarted
    from simulators.devices.session import DeliverySession  # lazy: keeps this module light to import

    session = DeliverySession(request, **(session_options or {}))
    tracker = _ProgressTracker(progress, _beam_count(request))
    session.bus.subscribe(tracker.on_event, (UnitStarted, MetersetProgress))
    stop.bind(lambda status, code: session.request_stop(status=status, code=code))
    return session.run()


def _beam_count(request: SessionRequest) -> int:
    if request.beam_tasks:
        return len(request.beam_tasks)
    try:
        return len(request.plan_dataset.FractionGroupSequence[0].ReferencedBeamSequence)
    except (AttributeError, IndexError, KeyError):
        return 0


class _ProgressTracker:
    """Turns session bus events into :class:`DeliveryProgress` calls (on the simulation thread)."""

    def __init__(self, progress: ProgressCallback, beam_count: int) -> None:
        self.progress = progress
        self.beam_count = beam_count
        self.beams: list[int] = []
        self.fraction = 0.0

    def on_event(self, event: object) -> None:
        number = int(getattr(event, "unit_number", 0))
        if number not in self.beams:
            self.beams.append(number)
        fraction = getattr(event, "session_fraction", None)
        if fraction is not None:
            self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.progress(
            DeliveryProgress(
                beam_number=number,
                beam_index=self.beams.index(number),
                beam_count=max(self.beam_count, len(self.beams)),
                fraction_done=self.fraction,
            )
        )
