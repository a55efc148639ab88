"""When a fault fires: at a simulated time, at a meterset or control point of a unit, on a DICOM operation,
or at a named step of the device's workflow.

Engine triggers (:class:`TimeTrigger`, :class:`MetersetTrigger`, :class:`ControlPointTrigger`) are armed on a
:class:`~simulators.core.engine.DeliveryEngine` before it runs and call ``fire()`` on the simulation
thread. A unit is a linac beam, an afterloader channel, a Gamma Knife shot or a tomotherapy projection
block; its control points are the plan's control points (linac), dwell positions (afterloader) or
projections. The meterset trigger follows the beam-on time of the segment that contains the target, so a
hold before the target delays it; a duration scaling applied after that segment started makes it approximate.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from simulators.core import events as ev
from simulators.core.engine import DeliveryEngine
from simulators.core.program import ProgramUnit, SegmentKind

Range = float | tuple[float, float]
_EPS_S = 1e-9


def draw(value: Range, rng: np.random.Generator) -> float:
    """A number, or a uniform draw from ``(low, high)`` on the fault's own random stream."""
    if isinstance(value, tuple):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def _describe(value: Range) -> str:
    return f"{value[0]:g}..{value[1]:g}" if isinstance(value, tuple) else f"{value:g}"


@dataclass(frozen=True)
class TimeTrigger:
    """At ``time_s`` simulated seconds after the session started."""

    time_s: Range

    kind = "engine"

    def describe(self) -> str:
        return f"at {_describe(self.time_s)} s"

    def arm(self, engine: DeliveryEngine, rng: np.random.Generator, fire: Callable[[], None]) -> None:
        engine.schedule_at(max(draw(self.time_s, rng), 0.0), fire)


def _unit(engine: DeliveryEngine, number: int) -> ProgramUnit | None:
    return next((u for u in engine.program.units if u.number == number), None)


class _BeamClock:
    """Beam-on seconds since a segment started, from BeamOn/BeamOff events (sim thread)."""

    def __init__(self, engine: DeliveryEngine) -> None:
        self.engine = engine
        self.beam_on = False
        self.since: float | None = None
        self.accum = 0.0
        engine.bus.subscribe(self._on_beam, (ev.BeamOn, ev.BeamOff))

    def _on_beam(self, event: ev.Event) -> None:
        now = float(event.time_s)
        if isinstance(event, ev.BeamOn):
            self.beam_on, self.since = True, now
        else:
            if self.since is not None:
                self.accum += now - self.since
            self.beam_on, self.since = False, None

    def restart(self, now: float) -> None:
        self.accum = 0.0
        self.since = now if self.beam_on else None

    def on_s(self, now: float) -> float:
        return self.accum + (now - self.since if self.since is not None else 0.0)


@dataclass(frozen=True)
class MetersetTrigger:
    """When ``unit`` reaches ``fraction`` of its planned meterset (or ``mu`` absolute, plan scale)."""

    unit: int
    fraction: Range | None = None
    mu: Range | None = None

    kind = "engine"

    def describe(self) -> str:
        if self.mu is not None:
            return f"at {_describe(self.mu)} MU of unit {self.unit}"
        return f"at {_describe(self.fraction or 0.0)} of unit {self.unit}'s meterset"

    def arm(self, engine: DeliveryEngine, rng: np.random.Generator, fire: Callable[[], None]) -> None:
        unit = _unit(engine, self.unit)
        if unit is None:
            return
        planned = float(unit.meterset_offset + unit.specified_meterset)
        total = draw(self.mu, rng) if self.mu is not None else draw(self.fraction or 0.0, rng) * planned
        target = total - float(unit.meterset_offset)  # on the session's scale
        cpm = unit.cp_meterset
        for k, seg in enumerate(unit.segments):
            start, end = float(cpm[seg.start_cp]), float(cpm[seg.end_cp])
            if seg.kind is SegmentKind.BEAM and end > start and start < target <= end + 1e-9:
                share = min((target - start) / (end - start), 1.0)
                self._watch(engine, unit.number, k, share, fire)
                return

    @staticmethod
    def _watch(
        engine: DeliveryEngine, number: int, index: int, share: float, fire: Callable[[], None]
    ) -> None:
        clock = _BeamClock(engine)
        env = engine.env

        def watcher(needed_s: float) -> Generator[simpy.Event, Any, None]:
            while not engine.finished:
                left = needed_s - clock.on_s(env.now)
                if left <= _EPS_S:
                    fire()
                    return
                yield env.timeout(left)

        def on_segment(event: ev.SegmentStarted) -> None:
            if event.unit_number == number and event.segment_index == index:
                clock.restart(float(event.time_s))
                env.process(watcher(share * float(event.duration_s)))

        engine.bus.subscribe(on_segment, (ev.SegmentStarted,))


@dataclass(frozen=True)
class ControlPointTrigger:
    """When ``unit`` reaches the plan's control point (dwell position, projection) ``control_point``."""

    unit: int
    control_point: int

    kind = "engine"

    def describe(self) -> str:
        return f"at control point {self.control_point} of unit {self.unit}"

    def arm(self, engine: DeliveryEngine, rng: np.random.Generator, fire: Callable[[], None]) -> None:
        unit = _unit(engine, self.unit)
        if unit is None:
            return
        matches = np.flatnonzero(np.asarray(unit.cp_plan_indices) == self.control_point)
        if matches.size == 0:
            return
        local = int(matches[0])
        env = engine.env
        starting = [
            k for k, s in enumerate(unit.segments) if s.kind is not SegmentKind.SETUP and s.start_cp == local
        ]

        def fire_now() -> None:
            engine.schedule_at(env.now, fire)

        if starting:
            index = starting[0]

            def on_segment(event: ev.SegmentStarted) -> None:
                if event.unit_number == unit.number and event.segment_index == index:
                    fire_now()

            engine.bus.subscribe(on_segment, (ev.SegmentStarted,))
        else:  # the unit's last control point: reached when the unit ends normally

            def on_finished(event: ev.UnitFinished) -> None:
                if event.unit_number == unit.number and event.started and not engine.finished:
                    fire_now()

            engine.bus.subscribe(on_finished, (ev.UnitFinished,))


@dataclass(frozen=True)
class OperationTrigger:
    """On the ``nth`` attempt of a DICOM ``operation`` (C-STORE, N-SET, ...; "" any) whose description
    contains ``match`` (e.g. ``RO-63``), counted over the whole run on that machine."""

    operation: str = ""
    nth: int = 1
    match: str = ""

    kind = "network"

    def describe(self) -> str:
        op = self.operation or "DICOM operation"
        what = f" matching {self.match!r}" if self.match else ""
        return f"on {op}{what} #{self.nth}"

    def matches(self, operation: str, what: str) -> bool:
        return (not self.operation or operation == self.operation) and (
            not self.match or self.match.lower() in what.lower()
        )


@dataclass(frozen=True)
class CheckpointTrigger:
    """At a named step of the device's TDW-II workflow (``before_claim``, ``claimed``, ``delivering``,
    ``record_journaled``, ``record_stored``, ``before_final``) of the fault's session."""

    checkpoint: str

    kind = "checkpoint"

    def describe(self) -> str:
        return f"at checkpoint {self.checkpoint!r}"


CHECKPOINTS = ("before_claim", "claimed", "delivering", "record_journaled", "record_stored", "before_final")

Trigger = TimeTrigger | MetersetTrigger | ControlPointTrigger | OperationTrigger | CheckpointTrigger
