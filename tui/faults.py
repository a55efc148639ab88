"""The faults an instructor can inject on a running machine, per device kind.

A :class:`ConsoleFault` acts on a :class:`FaultTarget` and always runs on the machine's simulation
thread (the clinic queues it to a small SimPy process it adds to each session), so it may use the whole
engine API, the afterloader's :class:`~simulators.devices.afterloader_faults.AfterloaderFaults`, and the
scenario fault library. The console offers, for a machine of kind K:

- the console's own list (below; ``register_faults(K, [...])`` adds more), and
- every engine fault of the scenario library (``scenarios.faults.FAULTS``) that applies to K, with its
  default parameters, named ``library:<name>``: the console and scenarios share one fault library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators.core.engine import DeliveryEngine
from simulators.core.program import ProgramUnit


@dataclass
class FaultTarget:
    """What a fault acts on; also satisfies the scenario library's ``FaultContext``."""

    engine: DeliveryEngine
    machine: str
    model: Any
    note_fn: Callable[[str], None]
    current_unit_fn: Callable[[], tuple[ProgramUnit, float] | None]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def note(self, what: str, **details: Any) -> None:
        extra = ", ".join(f"{k}={v}" for k, v in details.items())
        self.note_fn(what + (f" ({extra})" if extra else ""))

    def current_unit(self) -> tuple[ProgramUnit, float] | None:
        return self.current_unit_fn()

    def request_cancel(self, reason: str) -> int:
        self.note_fn(f"UPS cancel request is a scenario fault, not a console one: {reason}")
        return 0

    def crash_at(self, checkpoint: str) -> None:
        self.note_fn(f"device crash at {checkpoint!r} is not simulated from the console")


@dataclass(frozen=True)
class ConsoleFault:
    """A named fault: ``apply(target)`` injects it now (on the simulation thread)."""

    name: str
    title: str
    description: str
    apply: Callable[[FaultTarget], None]


_FAULTS: dict[str, list[ConsoleFault]] = {}


def register_faults(kind: str, faults: list[ConsoleFault]) -> None:
    """Add faults for machines of ``kind`` ("*": every kind); a kind's fault replaces a "*" one by name."""
    _FAULTS.setdefault(kind, []).extend(faults)


def faults_for(kind: str) -> list[ConsoleFault]:
    """Every fault an instructor may inject on a machine of ``kind``: console ones, then the library's."""
    found: dict[str, ConsoleFault] = {}
    for fault in [*_FAULTS.get("*", []), *_FAULTS.get(kind, [])]:
        found[fault.name] = fault
    for fault in library_faults(kind):
        found.setdefault(fault.name, fault)
    return list(found.values())


def library_faults(kind: str) -> list[ConsoleFault]:
    """The scenario library's engine faults for ``kind`` with default parameters (empty without it)."""
    try:
        from scenarios.faults import FAULTS
    except Exception:  # the library is optional for the console
        return []
    out = []
    for name, cls in sorted(FAULTS.items()):
        kinds = getattr(cls, "device_kinds", ())
        if getattr(cls, "kind", "") != "engine" or (kinds and kind not in kinds):
            continue
        try:
            fault = cls()  # default parameters
        except TypeError:
            continue  # a fault without defaults needs a scenario file

        def apply(target: FaultTarget, fault=fault) -> None:
            fault.apply(target)

        params = ", ".join(f"{k}={v}" for k, v in fault.params().items())
        out.append(
            ConsoleFault(
                f"library:{name}",
                f"{name}({params}) · scenario library",
                getattr(cls, "summary", "") or (cls.__doc__ or "").strip().splitlines()[0],
                apply,
            )
        )
    return out


def _afterloader(target: FaultTarget):
    from simulators.devices.afterloader_faults import AfterloaderFaults

    retraction_s = getattr(getattr(target.model, "afterloader", None), "emergency_retraction_s", 30.0)
    return AfterloaderFaults(target.engine, emergency_retraction_s=retraction_s)


register_faults(
    "*",
    [
        ConsoleFault(
            "door_open",
            "Door opened",
            "someone opens the treatment-room door: beam off / source retracted, interlock DOOR until closed",
            lambda t: t.engine.set_door(True),
        ),
        ConsoleFault(
            "beam_hold",
            "Beam hold",
            "automatic hold (servo): beam paused, meterset flat; the operator resumes (r)",
            lambda t: t.engine.hold("servo beam hold"),
        ),
        ConsoleFault(
            "power_loss",
            "Power loss",
            "mains power fails: beam off at once, latching interlock POWER, session ends MACHINE",
            lambda t: t.engine.interlock("POWER", latching=True),
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
            lambda t: t.engine.interlock("DOS1", latching=True),
        ),
        ConsoleFault(
            "interlock_mlc",
            "MLC position interlock",
            "a leaf is out of position: non-latching interlock MLC, session ends MACHINE",
            lambda t: t.engine.interlock("MLC", latching=False),
        ),
        ConsoleFault(
            "mlc_leaf_lag",
            "MLC leaf lagging (x1.5)",
            "a slow leaf motor: the rest of the delivery takes 1.5 times longer, dose rate drops",
            lambda t: t.engine.scale_remaining_durations(1.5, "MLC leaf lagging"),
        ),
        ConsoleFault(
            "gantry_stall",
            "Gantry stall (10 s)",
            "the gantry stops for 10 s: beam held, then resumes by itself",
            lambda t: t.engine.add_delay(10.0, "gantry stall"),
        ),
        ConsoleFault(
            "dose_rate_drop",
            "Dose rate drop to 50 %",
            "the klystron/magnetron output falls: the rest of the delivery takes twice as long",
            lambda t: t.engine.scale_remaining_durations(2.0, "dose rate drop"),
        ),
    ],
)

register_faults(
    "afterloader",
    [
        ConsoleFault(
            "obstruction",
            "Obstruction (check cable)",
            "the check cable stops short on its next run: channel aborted, the source never leaves the safe",
            lambda t: _afterloader(t).obstruction(),
        ),
        ConsoleFault(
            "wrong_channel_length",
            "Wrong channel length",
            "the check cable meets the channel's end early on its next run (CHANNEL_LENGTH)",
            lambda t: _afterloader(t).wrong_channel_length(),
        ),
        ConsoleFault(
            "source_stuck",
            "Source stuck out",
            "the source neither steps nor retracts: emergency retraction, late safe return (SOURCE_STUCK)",
            lambda t: _afterloader(t).source_stuck(),
        ),
        ConsoleFault(
            "power_loss",
            "Power loss (battery retraction)",
            "mains fails, the battery retracts the source (POWER_FAIL, MACHINE)",
            lambda t: _afterloader(t).power_loss(),
        ),
        ConsoleFault(
            "timer_discrepancy",
            "Timer discrepancy",
            "the secondary timer disagrees with the primary: TIMER, MACHINE",
            lambda t: _afterloader(t).timer_discrepancy(),
        ),
        ConsoleFault(
            "door_interlock_failure",
            "Door interlock failure (NRC IN 96-21)",
            "the door opens but the source stays out: only recorded, delivery goes on (trainer scenario)",
            lambda t: _afterloader(t).door_interlock_failure(),
        ),
    ],
)
