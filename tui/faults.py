"""The faults an instructor can inject on a running machine, per device kind.

Each :class:`ConsoleFault` calls the engine's faults API (thread-safe: commands are queued to the sim
thread). The list follows the fault model of ``machine-models.md`` §6 and the engine docstring; kinds
register their own with :func:`register_faults`. When the scenario fault library (``scenarios``) offers a
``console_faults(kind)`` function, its faults are offered too, so the console and scenarios share one
library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulators.core.engine import DeliveryEngine


@dataclass(frozen=True)
class ConsoleFault:
    """A named fault: ``apply(engine)`` injects it now."""

    name: str
    title: str
    description: str
    apply: Callable[[DeliveryEngine], None]


_FAULTS: dict[str, list[ConsoleFault]] = {}


def register_faults(kind: str, faults: list[ConsoleFault]) -> None:
    """Add faults for machines of ``kind`` ("*": every kind)."""
    _FAULTS.setdefault(kind, []).extend(faults)


def faults_for(kind: str) -> list[ConsoleFault]:
    """Every fault an instructor may inject on a machine of ``kind``, common ones first."""
    found = [*_FAULTS.get("*", []), *_FAULTS.get(kind, [])]
    names = {f.name for f in found}
    for fault in _library_faults(kind):
        if fault.name not in names:
            found.append(fault)
    return found


def _library_faults(kind: str) -> list[ConsoleFault]:
    try:
        from scenarios import faults as library  # optional: the scenario fault library
    except ImportError:
        return []
    provider = getattr(library, "console_faults", None)
    if provider is None:
        return []
    try:
        return [ConsoleFault(*f) if not isinstance(f, ConsoleFault) else f for f in provider(kind)]
    except Exception:  # a broken library must not break the console
        return []


register_faults(
    "*",
    [
        ConsoleFault(
            "power_loss",
            "Power loss",
            "mains power fails: beam off at once, latching interlock POWER, session ends MACHINE",
            lambda e: e.interlock("POWER", latching=True),
        ),
        ConsoleFault(
            "door_open",
            "Door opened",
            "someone opens the treatment-room door: beam off, interlock DOOR until it closes",
            lambda e: e.set_door(True),
        ),
        ConsoleFault(
            "beam_hold",
            "Beam hold",
            "automatic beam hold (servo): beam paused, meterset flat; the operator resumes",
            lambda e: e.hold("servo beam hold"),
        ),
    ],
)

register_faults(
    "linac",
    [
        ConsoleFault(
            "interlock_dose",
            "Dose monitor interlock (DOS1)",
            "dosimetry channel 1 out of tolerance: latching interlock, session ends MACHINE",
            lambda e: e.interlock("DOS1", latching=True),
        ),
        ConsoleFault(
            "interlock_mlc",
            "MLC position interlock",
            "a leaf is out of position: non-latching interlock MLC, session ends MACHINE",
            lambda e: e.interlock("MLC", latching=False),
        ),
        ConsoleFault(
            "mlc_leaf_lag",
            "MLC leaf lagging (x1.5)",
            "a slow leaf motor: the rest of the delivery takes 1.5 times longer, dose rate drops",
            lambda e: e.scale_remaining_durations(1.5, "MLC leaf lagging"),
        ),
        ConsoleFault(
            "gantry_stall",
            "Gantry stall (10 s)",
            "the gantry stops for 10 s: beam held, then resumes by itself",
            lambda e: e.add_delay(10.0, "gantry stall"),
        ),
        ConsoleFault(
            "dose_rate_drop",
            "Dose rate drop to 50 %",
            "the klystron/magnetron output falls: the rest of the delivery takes twice as long",
            lambda e: e.scale_remaining_durations(2.0, "dose rate drop"),
        ),
    ],
)
