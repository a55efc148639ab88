"""The one SimPy delivery engine every device kind uses: it plays a DeliveryProgram, returns a DeliveryResult.

One thread owns simulated time (the one calling :meth:`DeliveryEngine.run`). Other threads (network
handlers, the console) call :meth:`DeliveryEngine.post` or the convenience methods; their commands go on a
queue that a SimPy pump process drains every ``clock.command_poll_s`` simulated seconds (calls made before
``run()`` are queued too and act at t = 0). On the sim thread (SimPy processes,
:meth:`DeliveryEngine.schedule_at` callbacks, bus subscribers) the same methods apply at once.

The fault and operator model (machine-models.md §6):

- ``interlock(code, latching)``: beam off at once; the unit ends MACHINE with ``code`` and the meterset
  reached (interpolated inside the segment); later units are not delivered; the session ends MACHINE.
  States ... -> INTERRUPTED -> TERMINATED. A latching interlock stays active until ``clear_interlock``
  (beam on is refused meanwhile: pass ``interlocks=`` to the next session's engine); a non-latching one
  is cleared when the session ends. Opening the door with the beam on raises the non-latching interlock
  ``DOOR``, which clears when the door closes.
- ``hold(reason)`` / ``resume()``: automatic beam hold; beam and motion pause, the meterset stays flat,
  delivery resumes where it stopped; the held time adds to the unit's time (share key ``"hold"``). A hold
  not resumed within ``interrupt_timeout_s`` ends the session MACHINE, code ``HOLD_TIMEOUT``.
- ``interrupt(code)``: operator beam-off key; state INTERRUPTED. ``resume()`` within
  ``interrupt_timeout_s`` continues the same session where it stopped (READY, then beam on again); if not
  resumed, the session ends OPERATOR with ``code`` and the partial meterset, as a real console's
  interrupted beam is recorded.
- ``terminate(status, code)``: operator stop; like an interlock but OPERATOR (or ``status``), state
  TERMINATED at once.
- ``add_delay(seconds, reason)``: a beam hold that resumes by itself after ``seconds``.
- ``scale_remaining_durations(factor, reason)``: the rest of the current segment and every later
  segment (all later units too) take ``factor`` times longer; the planned dose rate is kept as "set",
  the delivered rate drops. Faults like a lagging leaf or a gantry stall are built from these.
- Beam on is refused while an interlock is active or the door is open: the engine publishes
  BeamOnRefused and waits (READY) for the cause to clear, at most ``interrupt_timeout_s``, then ends the
  session MACHINE with the interlock code (or ``DOOR``).
- Manual mode (``beam_on_key=True``, the training console): the beam does not switch on by itself. At
  the first beam segment of every unit, and again after an operator interrupt is resumed, the engine
  publishes BeamOnAwaited and waits (READY) for ``press_beam_on()``; automatic holds and step-and-shoot
  moves inside a unit do not need the key again. A key press while an interlock is active or the door is
  open is rejected (CommandRejected), as a console refuses it, and is not remembered. No key within
  ``interrupt_timeout_s`` ends the session OPERATOR, code ``BEAM_ON_TIMEOUT`` (the waiting time is in the
  unit's share key ``"beam_on_wait"``).

Metersets in results and events are on the scale of ``ProgramUnit.cp_meterset``, as the program builder
defines it (linac: the cumulative meterset of this session from 0, the continuation's start in
``meterset_offset``); the engine never adds the offset. Positions are played as given (rotations
unwrapped by the builder) and interpolated linearly. A unit whose first control point was never reached
has ``delivered=False`` and no control points.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import simpy

from simulators.core import commands as cmd
from simulators.core import events as ev
from simulators.core.bus import EventBus
from simulators.core.clock import Clock, FastClock
from simulators.core.noise import PositionNoise
from simulators.core.program import DeliveryProgram, ProgramUnit, Segment, SegmentKind
from simulators.core.results import DeliveredControlPoint, DeliveryResult, TerminationStatus, UnitResult
from simulators.core.states import FINAL_STATES, MachineState, StateMachine, beam_on_refusal

HOLD_SHARE_KEY = "hold"
DOOR_INTERLOCK = "DOOR"
HOLD_TIMEOUT_CODE = "HOLD_TIMEOUT"
BEAM_ON_TIMEOUT_CODE = "BEAM_ON_TIMEOUT"
BEAM_ON_WAIT_SHARE_KEY = "beam_on_wait"

_TIME_EPS_S = 1e-12


class _Stop(Exception):  # noqa: N818 - control flow inside the delivery process, never escapes
    def __init__(self, status: TerminationStatus, code: str, state: MachineState) -> None:
        super().__init__(status, code)
        self.status = status
        self.code = code
        self.state = state


@dataclass
class _SegRun:
    """A segment being played: fraction done (0..1), time left, time spent (incl. pauses)."""

    index: int
    seg: Segment
    remaining_s: float
    fraction: float = 0.0
    elapsed_s: float = 0.0
    moving: bool = False
    mark_s: float = 0.0  # sim time when the current move started (valid while moving)


@dataclass
class _SegRecord:
    seg: Segment
    elapsed_s: float
    meterset_start: float
    meterset_end: float


@dataclass
class _UnitRun:
    index: int
    unit: ProgramUnit
    start_s: float
    reached: list[tuple[int, float]] = field(default_factory=list)  # (local cp index, time_s)
    records: list[_SegRecord] = field(default_factory=list)
    share_s: dict[str, float] = field(default_factory=dict)
    beam_on_s: float = 0.0
    seg: _SegRun | None = None

    def add_share(self, key: str, seconds: float) -> None:
        if seconds > 0:
            self.share_s[key] = self.share_s.get(key, 0.0) + seconds


def _interpolate(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Linear between control points; rotations are unwrapped by the program builder, so no wrap here."""
    return a + fraction * (b - a)


def _validate(program: DeliveryProgram) -> None:
    for unit in program.units:
        where = f"program for machine {program.machine_id!r}, unit {unit.number} ({unit.name!r})"
        n = len(unit.cp_meterset)
        if n == 0:
            raise ValueError(f"{where}: no control points")
        if len(unit.cp_plan_indices) != n:
            raise ValueError(f"{where}: {len(unit.cp_plan_indices)} plan CP indices for {n} control points")
        for axis, values in unit.cp_positions.items():
            if np.asarray(values).shape[:1] != (n,):
                raise ValueError(f"{where}: axis {axis!r} has no row per control point ({n})")
        for k, seg in enumerate(unit.segments):
            if not (0 <= seg.start_cp <= seg.end_cp < n):
                raise ValueError(
                    f"{where}, segment {k}: control points {seg.start_cp}->{seg.end_cp} out of range"
                )
            if not (math.isfinite(seg.duration_s) and seg.duration_s >= 0):
                raise ValueError(f"{where}, segment {k}: duration {seg.duration_s!r} s")
            if seg.kind is SegmentKind.SETUP and k != 0:
                raise ValueError(f"{where}, segment {k}: a SETUP segment must be the unit's first")


class DeliveryEngine:
    """Plays one :class:`DeliveryProgram` in SimPy and returns the :class:`DeliveryResult`.

    ``sample_interval_s`` turns on AxisSample/MetersetProgress samples at that simulated rate.
    ``interlocks`` (code -> latching, or codes) and ``door_open`` carry machine state over from an
    earlier session. ``beam_on_key`` turns on manual mode (the operator's beam-on key releases each
    beam; see the module docstring).
    """

    def __init__(
        self,
        program: DeliveryProgram,
        *,
        session_start: datetime,
        bus: EventBus | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        sample_interval_s: float | None = None,
        interrupt_timeout_s: float = 600.0,
        interlocks: Mapping[str, bool] | Iterable[str] = (),
        door_open: bool = False,
        beam_on_key: bool = False,
    ) -> None:
        _validate(program)
        if not (math.isfinite(interrupt_timeout_s) and interrupt_timeout_s >= 0):
            raise ValueError(f"interrupt_timeout_s must be finite and >= 0, got {interrupt_timeout_s!r}")
        self.program = program
        self.session_start = session_start
        self.bus = bus if bus is not None else EventBus()
        self.seed = seed
        self.clock: Clock = clock if clock is not None else FastClock()
        self.env: simpy.Environment = self.clock.make_environment()
        self.interrupt_timeout_s = interrupt_timeout_s

        self._machine = StateMachine()
        self._queue: queue.SimpleQueue[cmd.Command] = queue.SimpleQueue()
        self._sim_thread: int | None = None
        self._process: simpy.Process | None = None
        self._sampler: simpy.Process | None = None
        self._sample_interval_s = self._checked_interval(sample_interval_s)
        self._events: list[ev.Event] = []
        self._finished = False
        self._result: DeliveryResult | None = None

        # machine conditions
        if isinstance(interlocks, Mapping):
            self._interlocks: dict[str, bool] = dict(interlocks)
        else:
            self._interlocks = dict.fromkeys(interlocks, True)
        self._door_open = door_open
        self._beam_on = False
        self.beam_on_key = beam_on_key
        self._beam_on_armed = False  # manual mode: the key was pressed for the current unit
        self._awaiting_key = False

        # requests from commands, acted on by the delivery process
        self._stop: tuple[TerminationStatus, str, MachineState] | None = None
        self._interrupt_code: str | None = None
        self._hold_reason: str | None = None
        self._delays: list[cmd.AddDelay] = []
        self._resume_requested = False
        self._paused_kind: str | None = None
        self._duration_factor = 1.0
        self._scale_pending = 1.0
        self._blocked = False
        self._interrupt_pending = False

        # progress
        self._unit: _UnitRun | None = None
        self._prev_end: tuple[Mapping[str, np.ndarray], int] | None = None  # last played (cp_positions, cp)
        self._session_target = sum(float(u.cp_meterset[-1] - u.cp_meterset[0]) for u in program.units)
        self._session_done = 0.0

        # seeded noise: one stream per unit for reached control points, one for interruption points
        children = np.random.SeedSequence(seed).spawn(len(program.units) + 1)
        sd = program.axis_noise_sd
        self._actual_positions = [
            PositionNoise(sd, np.random.default_rng(children[i])).perturb(u.cp_positions)
            for i, u in enumerate(program.units)
        ]
        self._stop_noise = PositionNoise(sd, np.random.default_rng(children[-1]))

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> MachineState:
        return self._machine.state

    @property
    def active_interlocks(self) -> dict[str, bool]:
        """Active interlock codes -> latching."""
        return dict(self._interlocks)

    @property
    def door_open(self) -> bool:
        return self._door_open

    @property
    def awaiting_beam_on(self) -> bool:
        """Manual mode: the engine waits for the beam-on key now."""
        return self._awaiting_key

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def result(self) -> DeliveryResult | None:
        return self._result

    @property
    def events(self) -> tuple[ev.Event, ...]:
        return tuple(self._events)

    def start(self) -> simpy.Process:
        """Register the delivery (and pump/sampler) processes; idempotent."""
        if self._process is None:
            self.env.process(self._pump())  # first, so commands queued before run() act at t=0 first
            self._process = self.env.process(self._deliver())
            self._ensure_sampler()
        return self._process

    def run(self) -> DeliveryResult:
        """Run the session to its end on the calling thread (which becomes the sim thread)."""
        if self._result is not None:
            return self._result
        process = self.start()
        self._sim_thread = threading.get_ident()
        self.clock.run(self.env, process)
        assert self._result is not None
        return self._result

    def schedule_at(self, time_s: float, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` on the sim thread at simulated ``time_s`` (scenarios' escape hatch)."""
        if time_s < self.env.now:
            raise ValueError(f"cannot schedule at {time_s} s: simulated time is already {self.env.now} s")

        def _at() -> Generator[simpy.Event, Any, None]:
            yield self.env.timeout(time_s - self.env.now)
            fn()

        self.env.process(_at())

    def post(self, command: cmd.Command) -> None:
        """Queue a command from any thread; the sim thread applies it at its next pump tick."""
        self._queue.put(command)
        self.clock.wake()

    def apply(self, command: cmd.Command) -> None:
        """Apply a command now (sim thread only)."""
        handler = getattr(self, "_apply_" + command.name)
        handler(command)

    def interlock(self, code: str, latching: bool = True) -> None:
        self._submit(cmd.Interlock(code, latching))

    def clear_interlock(self, code: str) -> None:
        self._submit(cmd.ClearInterlock(code))

    def hold(self, reason: str) -> None:
        self._submit(cmd.Hold(reason))

    def resume(self) -> None:
        self._submit(cmd.Resume())

    def interrupt(self, code: str = "OPERATOR_INTERRUPT") -> None:
        self._submit(cmd.Interrupt(code))

    def terminate(self, status: TerminationStatus = TerminationStatus.OPERATOR, code: str = "") -> None:
        self._submit(cmd.Terminate(status, code))

    def add_delay(self, seconds: float, reason: str) -> None:
        self._submit(cmd.AddDelay(seconds, reason))

    def scale_remaining_durations(self, factor: float, reason: str) -> None:
        self._submit(cmd.ScaleRemainingDurations(factor, reason))

    def set_door(self, is_open: bool) -> None:
        self._submit(cmd.SetDoor(is_open))

    def press_beam_on(self) -> None:
        """Manual mode: the operator's beam-on key (refused with an interlock active or the door open)."""
        self._submit(cmd.BeamOnKey())

    def set_sampling(self, interval_s: float | None) -> None:
        self._submit(cmd.SetSampling(interval_s))

    def device_fault(self, fault: str, **params: Any) -> None:
        """Record a device-specific fault (published as FaultInjected; see :class:`commands.DeviceFault`)."""
        self._submit(cmd.DeviceFault(fault, tuple(params.items())))

    # ------------------------------------------------------------------ commands
    def _submit(self, command: cmd.Command) -> None:
        """Apply at once on the sim thread; from anywhere else (or before run()) queue it."""
        if threading.get_ident() == self._sim_thread:
            self.apply(command)
        else:
            self.post(command)

    def _reject(self, command: cmd.Command, reason: str) -> None:
        self._publish(ev.CommandRejected, name=command.name, reason=reason)

    def _params(self, command: cmd.Command) -> dict[str, Any]:
        return {k: getattr(command, k) for k in command.__dataclass_fields__}

    def _apply_interlock(self, c: cmd.Interlock) -> None:
        self._publish(ev.FaultInjected, name=c.name, params=self._params(c))
        self._raise_interlock(c.code, c.latching)

    def _raise_interlock(self, code: str, latching: bool) -> None:
        self._interlocks[code] = latching or self._interlocks.get(code, False)
        self._publish(ev.InterlockRaised, code=code, latching=latching)
        if not self._finished and self._stop is None:
            self._stop = (TerminationStatus.MACHINE, code, MachineState.INTERRUPTED)
            self._wake_process()

    def _apply_clear_interlock(self, c: cmd.ClearInterlock) -> None:
        if c.code not in self._interlocks:
            self._reject(c, f"interlock {c.code!r} is not active")
            return
        if c.code == DOOR_INTERLOCK and self._door_open:
            self._reject(c, "the door is still open")
            return
        self._publish(ev.OperatorAction, name=c.name, params=self._params(c))
        del self._interlocks[c.code]
        self._publish(ev.InterlockCleared, code=c.code)
        self._wake_process()

    def _apply_hold(self, c: cmd.Hold) -> None:
        if self._finished:
            self._reject(c, "the session has ended")
        elif self._paused_kind in ("hold", "interrupt") or self._hold_reason is not None:
            self._reject(c, "the beam is already held or interrupted")
        else:
            self._publish(ev.FaultInjected, name=c.name, params=self._params(c))
            self._hold_reason = c.reason
            self._wake_process()

    def _apply_resume(self, c: cmd.Resume) -> None:
        if self._paused_kind in ("hold", "interrupt") and not self._resume_requested:
            self._publish(ev.OperatorAction, name=c.name, params={})
            self._resume_requested = True
            self._wake_process()
        elif self._hold_reason is not None or self._interrupt_code is not None:
            self._publish(ev.OperatorAction, name=c.name, params={})
            self._hold_reason = self._interrupt_code = None  # resumed before it took effect
        else:
            self._reject(c, "nothing is held or interrupted")

    def _apply_interrupt(self, c: cmd.Interrupt) -> None:
        if self._finished:
            self._reject(c, "the session has ended")
        elif self._paused_kind == "interrupt" or self._interrupt_code is not None:
            self._reject(c, "already interrupted")
        else:
            self._publish(ev.OperatorAction, name=c.name, params=self._params(c))
            self._interrupt_code = c.code
            self._wake_process()

    def _apply_terminate(self, c: cmd.Terminate) -> None:
        if self._finished:
            self._reject(c, "the session has ended")
            return
        self._publish(ev.OperatorAction, name=c.name, params=self._params(c))
        if self._stop is None:
            self._stop = (TerminationStatus(c.status), c.code, MachineState.TERMINATED)
            self._wake_process()

    def _apply_add_delay(self, c: cmd.AddDelay) -> None:
        if not (math.isfinite(c.seconds) and c.seconds >= 0):
            self._reject(c, f"delay must be finite and >= 0 s, got {c.seconds!r}")
        elif self._finished:
            self._reject(c, "the session has ended")
        else:
            self._publish(ev.FaultInjected, name=c.name, params=self._params(c))
            self._delays.append(c)
            self._wake_process()

    def _apply_scale_remaining_durations(self, c: cmd.ScaleRemainingDurations) -> None:
        if not (math.isfinite(c.factor) and c.factor > 0):
            self._reject(c, f"factor must be a positive number, got {c.factor!r}")
        elif self._finished:
            self._reject(c, "the session has ended")
        else:
            self._publish(ev.FaultInjected, name=c.name, params=self._params(c))
            self._duration_factor *= c.factor
            if self._unit is not None and self._unit.seg is not None:
                self._scale_pending *= c.factor
                self._wake_process()

    def _apply_beam_on(self, c: cmd.BeamOnKey) -> None:
        refusal = beam_on_refusal(self._interlocks, self._door_open)
        if not self.beam_on_key:
            self._reject(c, "not in manual mode: the beam switches on by itself")
        elif self._finished:
            self._reject(c, "the session has ended")
        elif self._beam_on:
            self._reject(c, "the beam is already on")
        elif self._paused_kind == "interrupt" or self._interrupt_code is not None:
            self._reject(c, "interrupted: resume first")
        elif refusal is not None:
            self._reject(c, refusal)
        elif self._beam_on_armed:
            self._reject(c, "beam on already pressed")
        else:
            self._publish(ev.OperatorAction, name=c.name, params={})
            self._beam_on_armed = True
            self._wake_process()

    def _apply_door(self, c: cmd.SetDoor) -> None:
        if c.is_open == self._door_open:
            return
        self._publish(ev.OperatorAction, name=c.name, params=self._params(c))
        self._door_open = c.is_open
        self._publish(ev.DoorChanged, is_open=c.is_open)
        if c.is_open and self._beam_on:
            self._raise_interlock(DOOR_INTERLOCK, latching=False)
        elif not c.is_open and DOOR_INTERLOCK in self._interlocks:
            del self._interlocks[DOOR_INTERLOCK]
            self._publish(ev.InterlockCleared, code=DOOR_INTERLOCK)
        self._wake_process()

    def _apply_device_fault(self, c: cmd.DeviceFault) -> None:
        self._publish(ev.FaultInjected, name=c.fault, params=dict(c.params))

    def _apply_sampling(self, c: cmd.SetSampling) -> None:
        try:
            interval = self._checked_interval(c.interval_s)
        except ValueError as exc:
            self._reject(c, str(exc))
            return
        self._publish(ev.OperatorAction, name=c.name, params=self._params(c))
        self._sample_interval_s = interval
        if self._process is not None:
            self._ensure_sampler()

    @staticmethod
    def _checked_interval(interval_s: float | None) -> float | None:
        if interval_s is not None and not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"sample interval must be a positive number of seconds, got {interval_s!r}")
        return interval_s

    def _wake_process(self) -> None:
        """Interrupt the delivery process's current wait so it re-reads the requests."""
        p = self._process
        if p is None or not p.is_alive or not self._blocked or self._interrupt_pending:
            return
        if self.env.active_process is p:
            return  # called from inside the process: it checks the requests before its next wait
        self._interrupt_pending = True
        p.interrupt("command")

    # ------------------------------------------------------------------ events and state
    def _publish(self, event_type: type[ev.Event], **fields: Any) -> None:
        event = event_type(machine_id=self.program.machine_id, time_s=float(self.env.now), **fields)
        self._events.append(event)
        self.bus.publish(event)

    def _set_state(self, new: MachineState, reason: str) -> None:
        if new is self._machine.state:
            return
        old = self._machine.transition(new)
        self._publish(ev.StateChanged, old=old, new=new, reason=reason)

    def _switch_beam(self, on: bool, unit_number: int) -> None:
        if on != self._beam_on:
            self._beam_on = on
            self._publish(ev.BeamOn if on else ev.BeamOff, unit_number=unit_number)

    # ------------------------------------------------------------------ processes
    def _pump(self) -> Generator[simpy.Event, Any, None]:
        while not self._finished:
            while True:
                try:
                    command = self._queue.get_nowait()
                except queue.Empty:
                    break
                self.apply(command)
            yield self.env.timeout(self.clock.command_poll_s)

    def _ensure_sampler(self) -> None:
        if self._sample_interval_s is not None and self._sampler is None and not self._finished:
            self._sampler = self.env.process(self._sample_loop())

    def _sample_loop(self) -> Generator[simpy.Event, Any, None]:
        while not self._finished and self._sample_interval_s is not None:
            self._publish_sample()
            yield self.env.timeout(self._sample_interval_s)
        self._sampler = None

    def _publish_sample(self) -> None:
        ur = self._unit
        if ur is None:
            return
        unit = ur.unit
        if ur.seg is None:
            local = ur.reached[-1][0] if ur.reached else 0
            positions = {k: np.asarray(v[local]) for k, v in unit.cp_positions.items()}
            meterset = float(unit.cp_meterset[local]) if ur.reached else float(unit.cp_meterset[0])
        else:
            fraction = self._fraction_now(ur.seg)
            positions = self._planned_positions(ur, ur.seg.seg, fraction)
            meterset = self._meterset_at(unit, ur.seg.seg, fraction)
        self._publish(ev.AxisSample, unit_number=unit.number, positions=positions)
        self._publish_progress(unit, meterset)

    def _wait(self, duration_s: float) -> Generator[simpy.Event, Any, tuple[float, bool]]:
        """Wait up to ``duration_s``; return (elapsed, woken early by a command)."""
        t0 = self.env.now
        self._blocked = True
        try:
            yield self.env.timeout(max(duration_s, 0.0))
            woke = False
        except simpy.Interrupt:
            woke = True
        finally:
            self._blocked = False
            self._interrupt_pending = False
        return self.env.now - t0, woke

    def _deliver(self) -> Generator[simpy.Event, Any, None]:
        self._set_state(MachineState.PREPARED, "session loaded")
        units = self.program.units
        results: list[UnitResult] = []
        status, code = TerminationStatus.NORMAL, ""
        for index, unit in enumerate(units):
            ur = _UnitRun(index=index, unit=unit, start_s=float(self.env.now))
            try:
                self._check_stop()
                self._unit = ur
                yield from self._play_unit(ur)
            except _Stop as stop:
                status, code = stop.status, stop.code
                self._enter_stop_state(stop)
                if self._unit is ur:
                    results.append(self._finish_unit(ur, status, code, stopped=True))
                break
            results.append(self._finish_unit(ur, status, code, stopped=False))
        for unit in units[len(results) :]:
            results.append(self._not_delivered(unit, status, code))
        self._end_session(status, code)
        self._result = DeliveryResult(
            machine_id=self.program.machine_id,
            device_kind=self.program.device_kind,
            session_start=self.session_start,
            seed=self.seed,
            units=tuple(results),
            termination_status=status,
            termination_code=code,
            end_time_s=float(self.env.now),
            events=tuple(self._events),
        )

    def _check_stop(self) -> None:
        if self._stop is not None:
            raise _Stop(*self._stop)

    def _enter_stop_state(self, stop: _Stop) -> None:
        unit_number = self._unit.unit.number if self._unit is not None else 0
        self._switch_beam(False, unit_number)
        reason = f"{stop.status}" + (f" {stop.code}" if stop.code else "")
        if stop.state is MachineState.INTERRUPTED and self.state is not MachineState.INTERRUPTED:
            self._set_state(MachineState.INTERRUPTED, reason)
        elif stop.state is MachineState.TERMINATED:
            self._set_state(MachineState.TERMINATED, reason)

    def _end_session(self, status: TerminationStatus, code: str) -> None:
        if status is TerminationStatus.NORMAL:
            self._set_state(MachineState.READY, "session delivered")
            self._set_state(MachineState.COMPLETED, "every unit delivered")
        elif self.state not in FINAL_STATES:
            self._set_state(MachineState.TERMINATED, f"session ended {status}" + (f" {code}" if code else ""))
        for interlock_code, latching in list(self._interlocks.items()):
            if not latching and interlock_code != DOOR_INTERLOCK:
                del self._interlocks[interlock_code]
                self._publish(ev.InterlockCleared, code=interlock_code)
        self._unit = None
        self._finished = True
        self._publish(ev.DeliveryFinished, termination_status=status, termination_code=code)

    # ------------------------------------------------------------------ one unit
    def _play_unit(self, ur: _UnitRun) -> Generator[simpy.Event, Any, None]:
        unit = ur.unit
        self._beam_on_armed = False  # manual mode: every unit needs its own beam-on key
        self._publish(ev.UnitStarted, unit_number=unit.number, unit_name=unit.name)
        self._set_state(MachineState.READY, f"unit {unit.number} started")
        if not unit.segments or unit.segments[0].kind is not SegmentKind.SETUP:
            self._reach(ur, 0)
        for k, seg in enumerate(unit.segments):
            yield from self._play_segment(ur, k, seg)
        self._switch_beam(False, unit.number)
        self._set_state(MachineState.READY, f"unit {unit.number} delivered")

    def _reach(self, ur: _UnitRun, local_cp: int) -> None:
        if not ur.reached or ur.reached[-1][0] != local_cp:
            ur.reached.append((local_cp, float(self.env.now)))

    def _play_segment(self, ur: _UnitRun, k: int, seg: Segment) -> Generator[simpy.Event, Any, None]:
        unit = ur.unit
        sr = _SegRun(index=k, seg=seg, remaining_s=seg.duration_s * self._duration_factor)
        ur.seg = sr
        self._scale_pending = 1.0
        self._publish(
            ev.SegmentStarted,
            unit_number=unit.number,
            segment_index=k,
            kind=str(seg.kind),
            limiting_axis=seg.limiting_axis,
            duration_s=sr.remaining_s,
        )
        if self._requests_pending():
            yield from self._handle_requests(ur, sr)  # requests that came between segments act first
        if seg.kind is not SegmentKind.BEAM or not self._beam_on:  # a BEAM segment with the beam on: nothing
            yield from self._enter_segment_mode(ur, sr)
        while True:
            if self._requests_pending():
                yield from self._handle_requests(ur, sr)
            if sr.remaining_s <= _TIME_EPS_S:
                break
            sr.moving, sr.mark_s = True, self.env.now
            elapsed, woke = yield from self._wait(sr.remaining_s)
            sr.moving = False
            self._advance(ur, sr, elapsed)
            if not woke:
                break
        sr.remaining_s, sr.fraction = 0.0, 1.0
        ur.records.append(self._seg_record(ur, sr))
        ur.seg = None
        self._reach(ur, seg.end_cp)
        self._publish_progress(unit, float(unit.cp_meterset[seg.end_cp]))
        self._prev_end = (unit.cp_positions, seg.end_cp)

    def _seg_record(self, ur: _UnitRun, sr: _SegRun) -> _SegRecord:
        unit = ur.unit
        return _SegRecord(
            seg=sr.seg,
            elapsed_s=sr.elapsed_s,
            meterset_start=float(unit.cp_meterset[sr.seg.start_cp]),
            meterset_end=self._meterset_at(unit, sr.seg, sr.fraction),
        )

    def _advance(self, ur: _UnitRun, sr: _SegRun, elapsed_s: float) -> None:
        if sr.remaining_s > 0:
            sr.fraction += (1.0 - sr.fraction) * min(elapsed_s / sr.remaining_s, 1.0)
        sr.remaining_s = max(sr.remaining_s - elapsed_s, 0.0)
        sr.elapsed_s += elapsed_s
        ur.add_share(sr.seg.limiting_axis, elapsed_s)
        if sr.seg.kind is SegmentKind.BEAM:
            ur.beam_on_s += elapsed_s

    def _fraction_now(self, sr: _SegRun) -> float:
        if not sr.moving or sr.remaining_s <= 0:
            return sr.fraction
        done = min((self.env.now - sr.mark_s) / sr.remaining_s, 1.0)
        return sr.fraction + (1.0 - sr.fraction) * done

    def _enter_segment_mode(self, ur: _UnitRun, sr: _SegRun) -> Generator[simpy.Event, Any, None]:
        """Beam and state for the segment kind (beam on waits for the console's permission)."""
        number = ur.unit.number
        kind = sr.seg.kind
        if kind is SegmentKind.BEAM:
            if not self._beam_on:
                if self.beam_on_key:
                    yield from self._await_beam_on_key(ur, sr)
                yield from self._await_beam_permit(ur, sr)
                self._set_state(MachineState.BEAM_ON, f"unit {number} segment {sr.index}")
                self._switch_beam(True, number)
        else:
            self._switch_beam(False, number)
            if kind is SegmentKind.HOLD_MOVE:
                self._set_state(MachineState.BEAM_HOLD, f"unit {number} segment {sr.index}: beam off move")
            else:
                self._set_state(MachineState.READY, f"unit {number} setup move")

    def _await_beam_on_key(self, ur: _UnitRun, sr: _SegRun) -> Generator[simpy.Event, Any, None]:
        """Manual mode: wait (READY) for the operator's beam-on key."""
        waited_s = 0.0
        try:
            while not self._beam_on_armed:
                self._check_stop()
                self._interrupt_code = None  # nothing to interrupt: the beam is not on
                if not self._awaiting_key:
                    self._awaiting_key = True
                    self._set_state(MachineState.READY, f"unit {ur.unit.number}: awaiting beam on")
                    self._publish(ev.BeamOnAwaited, unit_number=ur.unit.number)
                left_s = self.interrupt_timeout_s - waited_s
                if left_s <= _TIME_EPS_S:
                    raise _Stop(TerminationStatus.OPERATOR, BEAM_ON_TIMEOUT_CODE, MachineState.TERMINATED)
                elapsed, _ = yield from self._wait(left_s)
                waited_s += elapsed
                sr.elapsed_s += elapsed
                ur.add_share(BEAM_ON_WAIT_SHARE_KEY, elapsed)
        finally:
            self._awaiting_key = False

    def _await_beam_permit(self, ur: _UnitRun, sr: _SegRun) -> Generator[simpy.Event, Any, None]:
        waited_s = 0.0
        announced: str | None = None
        while True:
            self._check_stop()
            refusal = beam_on_refusal(self._interlocks, self._door_open)
            if refusal is None:
                return
            if refusal != announced:
                self._publish(ev.BeamOnRefused, unit_number=ur.unit.number, reason=refusal)
                announced = refusal
            left_s = self.interrupt_timeout_s - waited_s
            if left_s <= _TIME_EPS_S:
                code = sorted(self._interlocks)[0] if self._interlocks else DOOR_INTERLOCK
                raise _Stop(TerminationStatus.MACHINE, code, MachineState.INTERRUPTED)
            elapsed, _ = yield from self._wait(left_s)
            waited_s += elapsed
            sr.elapsed_s += elapsed
            ur.add_share(HOLD_SHARE_KEY, elapsed)

    def _requests_pending(self) -> bool:
        """Whether :meth:`_handle_requests` has anything to do (checked first: it runs for every segment)."""
        return (
            self._stop is not None
            or self._scale_pending != 1.0
            or self._interrupt_code is not None
            or self._hold_reason is not None
            or bool(self._delays)
        )

    def _handle_requests(self, ur: _UnitRun, sr: _SegRun) -> Generator[simpy.Event, Any, None]:
        """Act on pending requests before the next wait: stop, scale, interrupt, hold, delay."""
        while True:
            self._check_stop()
            if self._scale_pending != 1.0:
                sr.remaining_s *= self._scale_pending
                self._scale_pending = 1.0
            if self._interrupt_code is not None:
                code, self._interrupt_code = self._interrupt_code, None
                yield from self._pause(ur, sr, "interrupt", code, self.interrupt_timeout_s)
            elif self._hold_reason is not None:
                reason, self._hold_reason = self._hold_reason, None
                yield from self._pause(ur, sr, "hold", reason, self.interrupt_timeout_s)
            elif self._delays:
                delay = self._delays.pop(0)
                yield from self._pause(ur, sr, "delay", delay.reason, delay.seconds)
            else:
                return

    def _pause(
        self, ur: _UnitRun, sr: _SegRun, kind: str, reason: str, limit_s: float
    ) -> Generator[simpy.Event, Any, None]:
        """Beam (and motion) paused until resume, the delay's end, a stop, or the timeout."""
        number = ur.unit.number
        self._switch_beam(False, number)
        if kind == "interrupt":
            self._beam_on_armed = False  # manual mode: beam on again after the resume
            self._set_state(MachineState.INTERRUPTED, reason)
        else:
            self._publish(ev.BeamHeld, unit_number=number, reason=reason)
            self._set_state(MachineState.BEAM_HOLD, reason)
        self._paused_kind = kind
        self._resume_requested = False
        start_s = self.env.now
        try:
            while True:
                self._check_stop()
                if kind != "interrupt" and self._interrupt_code is not None:  # operator interrupts a hold
                    kind, reason, limit_s = "interrupt", self._interrupt_code, self.interrupt_timeout_s
                    self._interrupt_code = None
                    self._paused_kind = kind
                    self._beam_on_armed = False
                    self._set_state(MachineState.INTERRUPTED, reason)
                    start_s = self.env.now
                if kind != "delay" and self._resume_requested:
                    break
                left_s = limit_s - (self.env.now - start_s)
                if left_s <= _TIME_EPS_S:
                    if kind == "delay":
                        break
                    if kind == "hold":
                        raise _Stop(TerminationStatus.MACHINE, HOLD_TIMEOUT_CODE, MachineState.INTERRUPTED)
                    raise _Stop(TerminationStatus.OPERATOR, reason, MachineState.TERMINATED)
                elapsed, _ = yield from self._wait(left_s)
                sr.elapsed_s += elapsed
                ur.add_share(HOLD_SHARE_KEY, elapsed)
        finally:
            self._paused_kind = None
            self._resume_requested = False
        if kind == "interrupt":
            self._set_state(MachineState.READY, f"resumed after {reason}")
        else:
            self._publish(ev.BeamResumed, unit_number=number)
        yield from self._enter_segment_mode(ur, sr)

    # ------------------------------------------------------------------ results
    def _meterset_at(self, unit: ProgramUnit, seg: Segment, fraction: float) -> float:
        start = float(unit.cp_meterset[seg.start_cp])
        end = float(unit.cp_meterset[seg.end_cp])
        if fraction >= 1.0:
            return end
        if seg.kind is not SegmentKind.BEAM:
            return start
        return start + fraction * (end - start)

    def _planned_positions(self, ur: _UnitRun, seg: Segment, fraction: float) -> dict[str, np.ndarray]:
        unit = ur.unit
        out: dict[str, np.ndarray] = {}
        for axis, values in unit.cp_positions.items():
            b = np.asarray(values[seg.end_cp], dtype=float)
            if seg.kind is SegmentKind.SETUP:
                prev = self._prev_end
                has_prev = prev is not None and axis in prev[0]
                a = np.asarray(prev[0][axis][prev[1]], dtype=float) if has_prev else b
                if a.shape != b.shape:
                    a = b
            else:
                a = np.asarray(values[seg.start_cp], dtype=float)
            out[axis] = _interpolate(a, b, fraction)
        return out

    def _publish_progress(self, unit: ProgramUnit, meterset: float) -> None:
        done = self._session_done + (meterset - float(unit.cp_meterset[0]))
        if self._session_target > 0:
            fraction = min(max(done / self._session_target, 0.0), 1.0)
        else:
            fraction = (
                1.0 if self._unit is not None and self._unit.index == len(self.program.units) - 1 else 0.0
            )
        self._publish(
            ev.MetersetProgress,
            unit_number=unit.number,
            delivered=meterset,
            specified=unit.specified_meterset,
            session_fraction=fraction,
        )

    @staticmethod
    def _rates(record: _SegRecord | None) -> tuple[float, float]:
        """(set, delivered) meterset rate per minute over a played segment (delivered includes pauses)."""
        if record is None:
            return 0.0, 0.0
        elapsed_min = record.elapsed_s / 60.0
        delivered = (record.meterset_end - record.meterset_start) / elapsed_min if elapsed_min > 0 else 0.0
        return float(record.seg.beam_rate_per_min), delivered

    def _finish_unit(
        self, ur: _UnitRun, status: TerminationStatus, code: str, *, stopped: bool
    ) -> UnitResult:
        unit = ur.unit
        actual = self._actual_positions[ur.index]
        now = float(self.env.now)
        delivered = float(unit.cp_meterset[ur.reached[-1][0]]) if ur.reached else 0.0
        partial: DeliveredControlPoint | None = None
        sr = ur.seg
        if stopped and sr is not None:
            record = self._seg_record(ur, sr)
            if sr.seg.kind is not SegmentKind.SETUP:
                ur.records.append(record)
            if ur.reached and 0.0 < sr.fraction < 1.0 and sr.seg.kind is not SegmentKind.SETUP:
                delivered = record.meterset_end
                rate_set, rate_delivered = self._rates(record)
                planned = self._planned_positions(ur, sr.seg, sr.fraction)
                partial = DeliveredControlPoint(
                    plan_cp_index=int(unit.cp_plan_indices[sr.seg.end_cp]),
                    time_s=now,
                    specified_meterset=float(unit.cp_meterset[sr.seg.end_cp]),
                    delivered_meterset=delivered,
                    dose_rate_set_per_min=rate_set,
                    dose_rate_delivered_per_min=rate_delivered,
                    positions=self._stop_noise.perturb_one(planned),
                )
            if ur.reached:
                self._publish_progress(unit, delivered)
        # a control point's rates are those of the segment that starts at it, else of the one ending there
        from_cp = {r.seg.start_cp: r for r in reversed(ur.records) if r.seg.kind is not SegmentKind.SETUP}
        to_cp = {r.seg.end_cp: r for r in ur.records}
        points = []
        for local_cp, time_s in ur.reached:
            rate_set, rate_delivered = self._rates(from_cp.get(local_cp) or to_cp.get(local_cp))
            points.append(
                DeliveredControlPoint(
                    plan_cp_index=int(unit.cp_plan_indices[local_cp]),
                    time_s=time_s,
                    specified_meterset=float(unit.cp_meterset[local_cp]),
                    delivered_meterset=float(unit.cp_meterset[local_cp]),
                    dose_rate_set_per_min=rate_set,
                    dose_rate_delivered_per_min=rate_delivered,
                    positions={k: v[local_cp] for k, v in actual.items()},
                )
            )
        if partial is not None:
            points.append(partial)
        total_s = now - ur.start_s
        share = {k: v / total_s for k, v in sorted(ur.share_s.items())} if total_s > 0 else {}
        started = bool(ur.reached)
        if not started:
            delivered = 0.0
        self._session_done += delivered - float(unit.cp_meterset[0]) if started else 0.0
        ur.seg = None
        self._publish(
            ev.UnitFinished,
            unit_number=unit.number,
            termination_status=status,
            termination_code=code,
            delivered=delivered,
            started=started,
        )
        return UnitResult(
            number=unit.number,
            name=unit.name,
            meterset_unit=unit.meterset_unit,
            specified_meterset=unit.specified_meterset,
            delivered_meterset=delivered,
            termination_status=status,
            termination_code=code,
            start_time_s=ur.start_s,
            end_time_s=now,
            beam_on_time_s=ur.beam_on_s,
            limiting_axis_share=share,
            control_points=tuple(points),
            delivered=started,
        )

    def _not_delivered(self, unit: ProgramUnit, status: TerminationStatus, code: str) -> UnitResult:
        now = float(self.env.now)
        self._publish(
            ev.UnitFinished,
            unit_number=unit.number,
            termination_status=status,
            termination_code=code,
            delivered=0.0,
            started=False,
        )
        return UnitResult(
            number=unit.number,
            name=unit.name,
            meterset_unit=unit.meterset_unit,
            specified_meterset=unit.specified_meterset,
            delivered_meterset=0.0,
            termination_status=status,
            termination_code=code,
            start_time_s=now,
            end_time_s=now,
            beam_on_time_s=0.0,
            limiting_axis_share={},
            control_points=(),
            delivered=False,
        )
