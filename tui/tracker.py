"""Folds bus events of one machine into console state; the UI polls it for immutable snapshots.

The tracker is a bus subscriber: :meth:`MachineTracker.on_event` runs on the simulation thread and only
updates a few fields under a lock (never blocks, never raises into the engine). The UI thread calls
:meth:`MachineTracker.snapshot` at its own refresh rate, so a flood of samples collapses into the latest
one, and :meth:`EventLog.since` for new log lines. Textual is not imported here: this is testable alone.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.core import events as ev
from simulators.core.program import DeliveryProgram, SegmentKind
from simulators.core.states import MachineState
from tui.snapshot import MachineSnapshot

UNIT_WORDS = {"linac": "Beam", "afterloader": "Channel", "gamma_knife": "Shot", "tomotherapy": "Projection"}


@dataclass(frozen=True, slots=True)
class LogLine:
    """One event log line: sequence number, machine, simulated time (None: not an engine event), text."""

    seq: int
    machine_id: str
    time_s: float | None
    text: str
    level: str = "info"  # info | warning | alarm | operator


class EventLog:
    """A bounded, thread-safe log shared by every machine; readers ask for lines after a sequence."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._lock = threading.Lock()
        self._lines: deque[LogLine] = deque(maxlen=maxlen)
        self._seq = 0

    def add(self, machine_id: str, time_s: float | None, text: str, level: str = "info") -> LogLine:
        with self._lock:
            self._seq += 1
            line = LogLine(self._seq, machine_id, time_s, text, level)
            self._lines.append(line)
            return line

    def since(self, seq: int) -> list[LogLine]:
        with self._lock:
            return [line for line in self._lines if line.seq > seq]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq


def describe(event: ev.Event, unit_word: str = "Beam", meterset_unit: str = "MU") -> tuple[str, str] | None:
    """(text, level) for the event log, or None for high-rate events (samples, progress, segments)."""
    w = unit_word.lower()
    match event:
        case ev.StateChanged(new=new, reason=reason):
            return f"state {new}" + (f" ({reason})" if reason else ""), "info"
        case ev.UnitStarted(unit_number=n, unit_name=name):
            return f"{w} {n} '{name}' loaded", "info"
        case ev.BeamOnAwaited(unit_number=n):
            return f"{w} {n} ready: awaiting beam on", "operator"
        case ev.BeamOn(unit_number=n):
            return f"BEAM ON ({w} {n})", "beam"
        case ev.BeamOff(unit_number=n):
            return f"beam off ({w} {n})", "info"
        case ev.BeamOnRefused(reason=reason):
            return f"beam on refused: {reason}", "warning"
        case ev.BeamHeld(reason=reason):
            return f"beam hold: {reason}", "warning"
        case ev.BeamResumed():
            return "beam hold released", "info"
        case ev.InterlockRaised(code=code, latching=latching):
            return f"INTERLOCK {code}" + (" (latching)" if latching else ""), "alarm"
        case ev.InterlockCleared(code=code):
            return f"interlock {code} cleared", "info"
        case ev.DoorChanged(is_open=is_open):
            return ("door OPEN" if is_open else "door closed"), ("warning" if is_open else "info")
        case ev.FaultInjected(name=name, params=params):
            args = ", ".join(f"{k}={v}" for k, v in params.items())
            return f"fault injected: {name}({args})", "alarm"
        case ev.OperatorAction(name=name):
            return f"operator: {name}", "operator"
        case ev.CommandRejected(name=name, reason=reason):
            return f"refused {name}: {reason}", "warning"
        case ev.UnitFinished(unit_number=n, termination_status=status, termination_code=code, delivered=d):
            code_text = f" {code}" if code else ""
            return f"{w} {n} ended {status}{code_text} at {d:.1f} {meterset_unit}", "info"
        case ev.DeliveryFinished(termination_status=status, termination_code=code):
            return f"session ended {status}" + (f" {code}" if code else ""), "info"
    return None


class MachineTracker:
    """Console state of one machine, updated from its bus events and from the clinic's workflow."""

    def __init__(self, machine_id: str, kind: str, model_name: str, station: str, log: EventLog) -> None:
        self._lock = threading.Lock()
        self.log = log
        self._snap = MachineSnapshot(
            machine_id=machine_id,
            kind=kind,
            model_name=model_name,
            station=station,
            unit_word=UNIT_WORDS.get(kind, "Unit"),
        )
        self._program: DeliveryProgram | None = None
        self._segment: tuple[int, int, float, float] | None = None  # unit index, segment, start s, dur s
        self._unit_numbers: dict[int, int] = {}
        self._unit_start_s = 0.0

    # ------------------------------------------------------------------ reading
    def snapshot(self, now_s: float | None = None) -> MachineSnapshot:
        """The current state; ``now_s`` (simulated, e.g. the paced clock's estimate) refines time left."""
        with self._lock:
            snap = self._snap
            remaining = self._remaining_locked(snap.time_s if now_s is None else max(now_s, snap.time_s))
            if now_s is not None and snap.unit_number is not None and not snap.finished:
                snap = dataclasses.replace(snap, time_s=max(now_s, snap.time_s))
            return dataclasses.replace(snap, remaining_s=remaining)

    @property
    def program(self) -> DeliveryProgram | None:
        with self._lock:
            return self._program

    def current_unit(self):
        """(ProgramUnit, simulated start time) of the unit in progress, or None between sessions."""
        with self._lock:
            program, snap = self._program, self._snap
            if program is None or snap.unit_number is None or not program.units:
                return None
            return program.units[snap.unit_index], self._unit_start_s

    # ------------------------------------------------------------------ updates from the clinic
    def update(self, **fields: Any) -> None:
        """Set snapshot fields (clinic thread or UI thread)."""
        with self._lock:
            self._snap = dataclasses.replace(self._snap, **fields)

    def note(self, text: str, level: str = "info", *, time_s: float | None = None) -> None:
        """A log line that is not an engine event (TDW-II step, console refusal)."""
        self.log.add(self._snap.machine_id, time_s, text, level)
        with self._lock:
            self._snap = dataclasses.replace(self._snap, last_event=text)

    def begin_session(
        self,
        program: DeliveryProgram,
        *,
        patient: str,
        plan_label: str,
        door_open: bool,
        interlocks,
        session_start: datetime | None = None,
    ) -> None:
        """A delivery is about to run ``program`` (called on the session thread before the engine runs).

        The program (immutable data) and the session's start go into ``snapshot.extra`` for the views
        (an afterloader's channels and dwell positions, its source decay at treatment time).
        """
        units = program.units
        with self._lock:
            self._program = program
            self._segment = None
            self._unit_numbers = {u.number: i for i, u in enumerate(units)}
            first = units[0] if units else None
            self._snap = dataclasses.replace(
                self._snap,
                state=MachineState.STANDBY.value,
                beam_on=False,
                awaiting_beam_on=False,
                hold_reason="",
                door_open=door_open,
                interlocks=tuple(sorted(interlocks)),
                patient=patient,
                plan_label=plan_label,
                unit_number=first.number if first else None,
                unit_name=first.name if first else "",
                unit_index=0,
                unit_count=len(units),
                meterset_unit=first.meterset_unit if first else "MU",
                delivered=0.0,
                specified=float(first.cp_meterset[-1]) if first else 0.0,
                meterset_offset=first.meterset_offset if first else 0.0,
                session_fraction=0.0,
                time_s=0.0,
                segment_kind="",
                limiting_axis="",
                dose_rate_set_per_min=0.0,
                positions={k: v[0] for k, v in first.cp_positions.items()} if first else {},
                outcome="",
                extra={"program": program, "session_start": session_start},
            )

    def end_session(self, outcome: str) -> None:
        with self._lock:
            self._program = None
            self._segment = None
            self._snap = dataclasses.replace(
                self._snap, outcome=outcome, beam_on=False, awaiting_beam_on=False, dose_rate_set_per_min=0.0
            )

    # ------------------------------------------------------------------ bus subscriber (sim thread)
    def on_event(self, event: ev.Event) -> None:
        with self._lock:
            snap = self._snap
            changes = self._fold_locked(event, snap)
            text = describe(event, snap.unit_word, snap.meterset_unit)
            if text is not None:
                changes["last_event"] = text[0]
            if changes:
                self._snap = dataclasses.replace(snap, **changes)
        if text is not None:
            self.log.add(snap.machine_id, event.time_s, text[0], text[1])

    def _fold_locked(self, event: ev.Event, snap: MachineSnapshot) -> dict[str, Any]:
        c: dict[str, Any] = {"time_s": max(snap.time_s, event.time_s)}
        program = self._program
        match event:
            case ev.StateChanged(new=new):
                c["state"] = new.value
                if new is not MachineState.BEAM_HOLD:
                    c["hold_reason"] = ""
                if new is not MachineState.READY:
                    c["awaiting_beam_on"] = False
            case ev.UnitStarted(unit_number=n, unit_name=name):
                index = self._unit_numbers.get(n, 0)
                unit = program.units[index] if program is not None and program.units else None
                self._unit_start_s = event.time_s
                c.update(unit_number=n, unit_name=name, unit_index=index, delivered=0.0)
                if unit is not None:
                    c.update(
                        specified=float(unit.cp_meterset[-1]),
                        meterset_unit=unit.meterset_unit,
                        meterset_offset=unit.meterset_offset,
                    )
            case ev.SegmentStarted(unit_number=n, segment_index=k, kind=kind, limiting_axis=axis):
                index = self._unit_numbers.get(n, 0)
                self._segment = (index, k, event.time_s, event.duration_s)
                rate = 0.0
                if program is not None and kind == SegmentKind.BEAM.value:
                    rate = float(program.units[index].segments[k].beam_rate_per_min)
                c.update(segment_kind=kind, limiting_axis=axis, dose_rate_set_per_min=rate)
            case ev.BeamOn():
                c.update(beam_on=True, awaiting_beam_on=False)
            case ev.BeamOff():
                c["beam_on"] = False
            case ev.BeamOnAwaited():
                c["awaiting_beam_on"] = True
            case ev.BeamHeld(reason=reason):
                c["hold_reason"] = reason
            case ev.BeamResumed():
                c["hold_reason"] = ""
            case ev.MetersetProgress(delivered=d, session_fraction=f):
                c.update(delivered=d, session_fraction=f)
            case ev.AxisSample(positions=positions):
                c["positions"] = positions
            case ev.InterlockRaised(code=code):
                c["interlocks"] = tuple(sorted({*snap.interlocks, code}))
            case ev.InterlockCleared(code=code):
                c["interlocks"] = tuple(x for x in snap.interlocks if x != code)
            case ev.DoorChanged(is_open=is_open):
                c["door_open"] = is_open
            case ev.DeliveryFinished():
                c.update(beam_on=False, awaiting_beam_on=False, dose_rate_set_per_min=0.0)
                self._segment = None
        return c

    def _remaining_locked(self, now_s: float) -> float | None:
        program = self._program
        if program is None:
            return None
        if self._segment is None:
            return program.total_time_s if self._snap.time_s == 0.0 else 0.0
        index, k, start_s, duration_s = self._segment
        unit = program.units[index]
        left = max(duration_s - (now_s - start_s), 0.0)
        left += sum(s.duration_s for s in unit.segments[k + 1 :])
        left += sum(u.total_time_s for u in program.units[index + 1 :])
        return left
