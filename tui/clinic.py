"""The console's backend: virtual devices, their worklists and their running sessions, without Textual.

A :class:`Clinic` holds one :class:`MachineHandle` per device. Every operator or instructor action is a
non-blocking call from the UI thread: network work (RO-58 worklist query, RO-59..RO-65 for one item) runs
on a per-machine worker thread (named ``device-<AE>``; that thread also owns the session's simulated
time), and engine commands go through the engine's thread-safe ``post`` queue. State comes back through
each machine's :class:`~tui.tracker.MachineTracker`, a bus subscriber the UI polls.

Manual mode (the default for ``rtsim console``): the engine runs with ``beam_on_key=True`` and waits for
:meth:`Clinic.beam_on`. Auto mode (``rtsim device run --console``): the device works through its worklist
and switches the beam on by itself, as a TMS developer wants to watch it. Door state and latching
interlocks carry over from one session to the next, as on a real machine.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from machine_models.schema import MachineModel
from simulators.core.bus import EventBus
from simulators.core.clock import PacedClock
from simulators.core.engine import DeliveryEngine
from simulators.core.events import DeliveryFinished
from simulators.core.results import TerminationStatus
from simulators.core.states import beam_on_refusal
from simulators.devices.session import SessionRequest
from simulators.dicom.tdd import Device, StopToken, session_deliver
from simulators.dicom.tdd.delivery import ProgressCallback
from simulators.dicom.tdd.messages import Workitem
from tui.faults import ConsoleFault, FaultTarget, faults_for
from tui.snapshot import WorklistLine
from tui.tracker import EventLog, MachineTracker

LOG = logging.getLogger(__name__)

SPEEDS = (1.0, 2.0, 10.0, 60.0)
TRAINING_PATIENCE_S = 8 * 3600.0  # simulated s a session waits for beam on / resume (8 min wall at 60x)
_UID = re.compile(r"\b\d+(?:\.\d+){5,}\b")


@dataclass
class MachineHandle:
    """One device of the clinic, as the console drives it."""

    machine_id: str  # the device's AE title
    model: MachineModel
    station: str
    tracker: MachineTracker
    device: Device | None = None
    manual: bool = True
    auto: bool = False
    door_open: bool = False
    latched: dict[str, bool] = field(default_factory=dict)
    engine: DeliveryEngine | None = None
    clock: PacedClock | None = None
    sim_calls: deque[Callable[[], None]] = field(default_factory=deque)  # run on the sim thread
    worklist: list[Workitem] = field(default_factory=list)
    selected_uid: str = ""
    busy: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        return str(self.model.kind)

    def live_engine(self) -> DeliveryEngine | None:
        engine = self.engine
        return engine if engine is not None and not engine.finished else None


class Clinic:
    """Devices plus the console's controls. ``start`` it before use, ``stop`` it at the end.

    ``speed`` is the paced clock factor (simulated seconds per wall second) for every session;
    ``sample_interval_s`` is the simulated interval of axis samples for the machine views.
    ``starter`` (optional) runs on a background thread in :meth:`start` (e.g. start an embedded TMS
    and schedule sample plans) and returns the handles' devices.
    """

    def __init__(
        self,
        handles: Sequence[MachineHandle],
        *,
        log: EventLog,
        speed: float = 1.0,
        sample_interval_s: float = 0.5,
        title: str = "rtsim clinic",
        poll_interval_s: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.machines: dict[str, MachineHandle] = {h.machine_id: h for h in handles}
        self.log = log
        self.speed = speed
        self.paused = False
        self.sample_interval_s = sample_interval_s
        self.title = title
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._log_handler: _WorkflowLogHandler | None = None
        self.on_stop: list[Callable[[], None]] = []
        self.ready = threading.Event()
        self.startup: Callable[[Clinic], None] | None = None
        self.startup_error = ""
        self.seed = seed
        self._fault_count = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Attach the workflow log and run ``startup`` (if any) and the auto loops in the background."""
        self._log_handler = _WorkflowLogHandler(self)
        workflow = logging.getLogger("simulators.dicom.tdd")
        workflow.addHandler(self._log_handler)
        workflow.setLevel(logging.INFO)
        self._spawn("clinic-start", self._start_background)

    def _start_background(self) -> None:
        try:
            if self.startup is not None:
                self.startup(self)
        except Exception as exc:  # shown in the console, never a traceback on the terminal
            self.startup_error = f"{type(exc).__name__}: {exc}"
            self.log.add("clinic", None, f"start-up failed: {self.startup_error}", "alarm")
            LOG.debug("clinic start-up failed", exc_info=True)
        finally:
            self.ready.set()
        for handle in self.machines.values():
            self.refresh_worklist(handle.machine_id)
            self._spawn(f"device-{handle.machine_id}", self._auto_loop, handle)  # its TDW-II log lines

    def stop(self) -> None:
        """Stop the auto loops, end running sessions (OPERATOR), close devices."""
        self._stop.set()
        for handle in self.machines.values():
            engine = handle.live_engine()
            if engine is not None:
                engine.terminate(TerminationStatus.OPERATOR, "CONSOLE_CLOSED")
            if handle.clock is not None:
                handle.clock.resume()
        for thread in self._threads:
            thread.join(timeout=10.0)
        if self._log_handler is not None:
            logging.getLogger("simulators.dicom.tdd").removeHandler(self._log_handler)
        for fn in self.on_stop:
            try:
                fn()
            except Exception as exc:
                LOG.warning("clinic stop: %s", exc)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    # ------------------------------------------------------------------ sessions (device threads)
    def session_options(
        self,
        machine_id: str,
        request: SessionRequest,
        *,
        bus: EventBus | None = None,
        clock: PacedClock | None = None,
    ) -> dict[str, Any]:
        """Bus, hooks and engine options for one delivery on ``machine_id`` (LocalSite's factory).

        ``bus``/``clock``: attach the console to another front end's bus and pace it with this clock
        (the scenario player does this to the scenario runner's sessions).
        """
        handle = self.machines[machine_id]
        clock = clock if clock is not None else PacedClock(self.speed)
        if self.paused:
            clock.pause()
        bus = bus if bus is not None else EventBus()
        tracker = handle.tracker
        bus.subscribe(tracker.on_event)
        plan = request.plan_dataset
        patient = f"{plan.get('PatientName', '')} ({plan.get('PatientID', '')})"
        label = str(plan.get("RTPlanLabel", ""))

        def attach(engine: DeliveryEngine) -> None:
            handle.sim_calls = deque()
            handle.engine, handle.clock = engine, clock
            engine.env.process(self._sim_pump(handle, engine))
            tracker.begin_session(
                engine.program,
                patient=patient,
                plan_label=label,
                door_open=handle.door_open,
                interlocks=handle.latched,
                session_start=engine.session_start,
            )

        def finished(event: DeliveryFinished) -> None:
            engine = handle.engine
            if engine is not None:
                handle.latched = {k: v for k, v in engine.active_interlocks.items() if v}
                handle.door_open = engine.door_open

        bus.subscribe(finished, (DeliveryFinished,))
        return {
            "bus": bus,
            "engine_hooks": (attach,),
            "engine_options": {
                "clock": clock,
                "sample_interval_s": self.sample_interval_s,
                "interrupt_timeout_s": TRAINING_PATIENCE_S,
                "beam_on_key": handle.manual and not handle.auto,
                "door_open": handle.door_open,
                "interlocks": dict(handle.latched),
            },
        }

    @staticmethod
    def _sim_pump(handle: MachineHandle, engine: DeliveryEngine):
        """A SimPy process of the session: runs the console's queued calls (faults) on the sim thread."""
        calls = handle.sim_calls
        while not engine.finished:
            while calls:
                call = calls.popleft()
                try:
                    call()
                except Exception as exc:
                    handle.tracker.note(f"fault failed: {type(exc).__name__}: {exc}", "warning")
                except BaseException as exc:  # the library's DeviceCrash: not simulated here
                    if type(exc).__name__ != "DeviceCrash":
                        raise
                    handle.tracker.note("a device crash is not simulated from the console", "warning")
            yield engine.env.timeout(engine.clock.command_poll_s)

    def deliver_for(self, machine_id: str):
        """A ``Deliver`` callable for a :class:`Device` that runs sessions under this console."""

        def deliver(request: SessionRequest, stop: StopToken, progress: ProgressCallback):
            options = self.session_options(machine_id, request)
            return session_deliver(request, stop, progress, session_options=options)

        return deliver

    def _auto_loop(self, handle: MachineHandle) -> None:
        while not self._stop.is_set():
            if handle.auto and handle.device is not None and self._claim_busy(handle):
                try:
                    outcomes = handle.device.run_once()
                    for outcome in outcomes:
                        self._finish(handle, outcome)
                except Exception as exc:
                    handle.tracker.note(f"device loop: {exc}", "warning")
                finally:
                    self._release_busy(handle)
                self._query(handle)
            self._stop.wait(self.poll_interval_s)

    def _claim_busy(self, handle: MachineHandle) -> bool:
        with handle.lock:
            if handle.busy:
                return False
            handle.busy = True
        handle.tracker.update(busy=True)
        return True

    def _release_busy(self, handle: MachineHandle) -> None:
        with handle.lock:
            handle.busy = False
        handle.tracker.update(busy=False, step="")

    def _finish(self, handle: MachineHandle, outcome: Any) -> None:
        text = f"{outcome.label or 'workitem'}: {outcome.state}"
        result = outcome.session.result if outcome.session else None
        if result is not None:
            delivered = sum(u.delivered_meterset for u in result.units)
            specified = sum(u.specified_meterset for u in result.units)
            unit = result.units[0].meterset_unit if result.units else ""
            text += f", {delivered:.1f} of {specified:.1f} {unit}"
        if outcome.reason:
            text += f" ({outcome.reason})"
        handle.tracker.end_session(text)
        handle.tracker.note(text, "info" if outcome.state == "COMPLETED" else "warning")

    # ------------------------------------------------------------------ worklist
    def refresh_worklist(self, machine_id: str) -> None:
        """RO-58 query for the machine's station, in the background."""
        handle = self.machines[machine_id]
        self._spawn(f"device-{machine_id}-worklist", self._query, handle)

    def _query(self, handle: MachineHandle) -> None:
        if handle.device is None:
            return
        try:
            items = handle.device.query_worklist()
        except Exception as exc:
            handle.tracker.note(f"worklist query failed: {exc}", "warning")
            return
        handle.worklist = items
        lines = tuple(
            WorklistLine(
                ups_uid=i.ups_uid,
                label=i.label,
                patient=f"{i.patient_name} ({i.patient_id})",
                delivery_type=i.delivery_type or "TREATMENT",
                scheduled=i.start_datetime,
            )
            for i in items
        )
        selected = handle.selected_uid if any(i.ups_uid == handle.selected_uid for i in items) else ""
        if not selected and items:
            selected = items[0].ups_uid
        handle.selected_uid = selected
        handle.tracker.update(worklist=lines, selected_uid=selected)

    def select(self, machine_id: str, ups_uid: str) -> None:
        handle = self.machines[machine_id]
        handle.selected_uid = ups_uid
        handle.tracker.update(selected_uid=ups_uid)

    # ------------------------------------------------------------------ operator controls
    def _refuse(self, handle: MachineHandle, text: str) -> str:
        handle.tracker.note(text, "warning")
        return text

    def prepare(self, machine_id: str) -> str | None:
        """Load the selected workitem (RO-59..RO-61) and deliver it; returns a refusal or None."""
        handle = self.machines[machine_id]
        item = next((i for i in handle.worklist if i.ups_uid == handle.selected_uid), None)
        if item is None:
            return self._refuse(handle, "prepare refused: no worklist item selected")
        if handle.device is None:
            return self._refuse(handle, "prepare refused: no device")
        if not self._claim_busy(handle):
            return self._refuse(handle, "prepare refused: a session is already in progress")
        handle.tracker.note(f"prepare {item.label or item.ups_uid}", "operator")
        self._spawn(f"device-{machine_id}", self._process, handle, item)
        return None

    def _process(self, handle: MachineHandle, item: Workitem) -> None:
        try:
            assert handle.device is not None
            self._finish(handle, handle.device.process(item))
        except Exception as exc:
            handle.tracker.note(f"workitem failed: {exc}", "alarm")
        finally:
            self._release_busy(handle)
            self._query(handle)

    def beam_on(self, machine_id: str) -> str | None:
        """The beam-on key: refused with the door open, an interlock, or nothing ready."""
        handle = self.machines[machine_id]
        engine = handle.live_engine()
        if engine is None:
            return self._refuse(handle, "beam on refused: no session prepared")
        if not engine.beam_on_key:
            return self._refuse(handle, "beam on refused: auto mode, the beam switches on by itself")
        snap = handle.tracker.snapshot()
        refusal = beam_on_refusal(snap.interlocks, snap.door_open)
        if refusal is not None:
            return self._refuse(handle, f"beam on refused: {refusal}")
        if snap.beam_on:
            return self._refuse(handle, "beam on refused: the beam is already on")
        if snap.state == "INTERRUPTED":
            return self._refuse(handle, "beam on refused: interrupted, resume first")
        engine.press_beam_on()
        return None

    def interrupt(self, machine_id: str) -> str | None:
        return self._engine_call(machine_id, "interrupt", lambda e: e.interrupt())

    def resume(self, machine_id: str) -> str | None:
        return self._engine_call(machine_id, "resume", lambda e: e.resume())

    def terminate(self, machine_id: str) -> str | None:
        return self._engine_call(
            machine_id, "terminate", lambda e: e.terminate(TerminationStatus.OPERATOR, "OPERATOR_TERMINATE")
        )

    def _engine_call(self, machine_id: str, what: str, fn: Callable[[DeliveryEngine], None]) -> str | None:
        handle = self.machines[machine_id]
        engine = handle.live_engine()
        if engine is None:
            return self._refuse(handle, f"{what} refused: no session running")
        fn(engine)
        return None

    def set_door(self, machine_id: str, is_open: bool) -> None:
        handle = self.machines[machine_id]
        engine = handle.live_engine()
        if engine is not None:
            engine.set_door(is_open)
            return
        if handle.door_open != is_open:
            handle.door_open = is_open
            handle.tracker.update(door_open=is_open)
            handle.tracker.note("door OPEN" if is_open else "door closed", "warning" if is_open else "info")

    def toggle_door(self, machine_id: str) -> None:
        self.set_door(machine_id, not self.machines[machine_id].tracker.snapshot().door_open)

    def clear_interlocks(self, machine_id: str) -> None:
        """Instructor/engineer: reset latching interlocks (the door one clears when the door closes)."""
        handle = self.machines[machine_id]
        engine = handle.live_engine()
        codes = list(engine.active_interlocks) if engine is not None else list(handle.latched)
        for code in codes:
            if engine is not None:
                engine.clear_interlock(code)
        if engine is None and codes:
            handle.latched.clear()
            handle.tracker.update(interlocks=())
            handle.tracker.note(f"interlocks reset: {', '.join(codes)}", "operator")

    def set_auto(self, machine_id: str, auto: bool) -> None:
        handle = self.machines[machine_id]
        handle.auto = auto
        handle.tracker.update(auto=auto)
        handle.tracker.note("auto mode: the device works through its worklist" if auto else "manual mode")

    # ------------------------------------------------------------------ instructor controls
    def faults(self, machine_id: str) -> list[ConsoleFault]:
        return faults_for(self.machines[machine_id].kind)

    def inject(self, machine_id: str, fault_name: str) -> str | None:
        """Queue a fault to the machine's simulation thread; returns a refusal or None."""
        handle = self.machines[machine_id]
        fault = next((f for f in self.faults(machine_id) if f.name == fault_name), None)
        if fault is None:
            return self._refuse(handle, f"unknown fault {fault_name!r} for a {handle.kind}")
        engine = handle.live_engine()
        if engine is None:
            return self._refuse(handle, f"fault {fault.title!r} not injected: no session running")
        self._fault_count += 1
        target = FaultTarget(
            engine=engine,
            machine=machine_id,
            model=handle.model,
            note_fn=lambda text: handle.tracker.note(text, "alarm"),
            current_unit_fn=handle.tracker.current_unit,
            rng=np.random.default_rng([self.seed, self._fault_count]),
        )
        handle.tracker.note(f"instructor: {fault.title}", "operator")
        handle.sim_calls.append(lambda: fault.apply(target))
        engine.clock.wake()
        return None

    def set_speed(self, factor: float) -> None:
        self.speed = factor
        for handle in self.machines.values():
            if handle.clock is not None:
                handle.clock.set_factor(factor)
        self.log.add("clinic", None, f"clock {factor:g}x", "operator")

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        for handle in self.machines.values():
            if handle.clock is not None:
                (handle.clock.pause if paused else handle.clock.resume)()
        self.log.add("clinic", None, "clock paused" if paused else "clock running", "operator")

    # ------------------------------------------------------------------ reading
    def snapshot(self, machine_id: str):
        handle = self.machines[machine_id]
        clock = handle.clock
        now_s = clock.sim_now() if clock is not None and handle.live_engine() is not None else None
        snap = handle.tracker.snapshot(now_s)
        return dataclasses.replace(
            snap, clock_factor=self.speed, clock_paused=self.paused, manual=handle.manual, auto=handle.auto
        )


class _WorkflowLogHandler(logging.Handler):
    """TDW-II steps (RO-58..RO-65) from the device threads into the console log, UIDs shortened."""

    def __init__(self, clinic: Clinic) -> None:
        super().__init__(logging.INFO)
        self.clinic = clinic

    def emit(self, record: logging.LogRecord) -> None:
        name = record.threadName or ""
        if not name.startswith("device-"):
            return
        machine_id = name.removeprefix("device-").removesuffix("-worklist")
        handle = self.clinic.machines.get(machine_id)
        if handle is None:
            return
        try:
            text = _UID.sub(lambda m: "…" + m.group(0)[-6:], record.getMessage())
        except Exception:
            return
        level = "warning" if record.levelno >= logging.WARNING else "dicom"
        self.clinic.log.add(machine_id, None, text, level)
        if name == f"device-{machine_id}":
            handle.tracker.update(step=text[:80])


def new_handle(machine_id: str, model: MachineModel, station: str, log: EventLog) -> MachineHandle:
    tracker = MachineTracker(machine_id, str(model.kind), model.model_name, station, log)
    return MachineHandle(machine_id=machine_id, model=model, station=station, tracker=tracker)
