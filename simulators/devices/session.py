"""One treatment session on one machine: plan in, checked, delivered, record out.

This is the single entry point every front end uses (``rtsim deliver``, the TDD network client, the
scenario runner, the console): it reads the plan, runs the capability check, builds the delivery
program, runs the engine and writes the record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydicom import Dataset

from machine_models.schema import MachineModel
from simulators.core.bus import EventBus
from simulators.core.engine import DeliveryEngine
from simulators.core.gc_pause import gc_paused
from simulators.core.program import DeliveryProgram
from simulators.core.results import DeliveryResult, TerminationStatus
from simulators.devices.base import DeviceDriver, driver_for
from simulators.errors import PlanRefusedError
from simulators.plans.model import BeamTask


@dataclass(frozen=True)
class SessionRequest:
    """What to deliver, on which machine, and how.

    ``answers_to`` is the Treatment Machine Name this machine answers to (default: the model's).
    ``beam_tasks`` come from the delivery instruction (a linac: :class:`BeamTask` per beam; other kinds
    their own task type); None: everything in fraction group 1.
    """

    plan_dataset: Dataset
    machine: MachineModel
    source: str = "plan"
    answers_to: str | None = None
    beam_tasks: tuple[BeamTask, ...] | tuple[Any, ...] | None = None
    seed: int = 0
    session_start: datetime | None = None
    require_approved: bool = True
    operator_name: str = ""
    referenced_record_uids: tuple[str, ...] = ()


@dataclass
class SessionOutcome:
    """What happened: refused (with every reason), or delivered (fully or partly) with its record."""

    refused_reasons: list[str] = field(default_factory=list)
    result: DeliveryResult | None = None
    record: Dataset | None = None
    plan: Any = None  # the typed plan (LinacPlan for a linac)
    program: DeliveryProgram | None = None
    summary: dict | None = None  # filled by the caller that writes the record (it knows the path)

    @property
    def refused(self) -> bool:
        return bool(self.refused_reasons)


EngineHook = Callable[[DeliveryEngine], None]


class DeliverySession:
    """Runs one :class:`SessionRequest` to a :class:`SessionOutcome` on the calling thread.

    ``request_stop`` and ``interlock`` may be called from any thread (a network handler, a console):
    they are queued to the simulation thread. Events go to ``bus``. ``engine_hooks`` are called with
    the engine before it runs (fault scripts, a paced clock's observers); ``clock`` replaces the fast
    clock (e.g. a paced clock for the console).
    """

    def __init__(
        self,
        request: SessionRequest,
        *,
        bus: EventBus | None = None,
        engine_hooks: tuple[EngineHook, ...] = (),
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.request = request
        self.bus = bus if bus is not None else EventBus()
        self.engine_hooks = list(engine_hooks)
        self.engine_options = dict(engine_options or {})
        self.driver: DeviceDriver = driver_for(request.machine.kind)
        self._lock = threading.Lock()
        self._engine: DeliveryEngine | None = None
        self._pending: list[Callable[[DeliveryEngine], None]] = []

    @property
    def treatment_machine_name(self) -> str:
        return self.request.answers_to or self.request.machine.treatment_machine_name

    @property
    def engine(self) -> DeliveryEngine | None:
        """The running engine (None before the delivery starts)."""
        with self._lock:
            return self._engine

    def prepare(self) -> tuple[Any, list[str]]:
        """Read and check the plan; return it with every refusal reason (empty when deliverable)."""
        request = self.request
        with gc_paused():  # a burst of small objects (one per control point): see gc_pause
            plan = self.driver.read_plan(request.plan_dataset, request.source)
            reasons = self.driver.check_plan(
                plan,
                request.machine,
                answers_to=self.treatment_machine_name,
                require_approved=request.require_approved,
            )
        if request.beam_tasks:
            reasons += self.driver.check_tasks(plan, request.beam_tasks)
        return plan, reasons

    def run(self) -> SessionOutcome:
        """Check, deliver and record. A refused plan returns its reasons and delivers nothing."""
        try:
            plan, reasons = self.prepare()
        except PlanRefusedError as refusal:
            return SessionOutcome(refused_reasons=refusal.reasons)
        if reasons:
            return SessionOutcome(refused_reasons=reasons, plan=plan)
        request = self.request
        session_start = request.session_start or datetime.now().replace(microsecond=0)
        # a driver whose physics depends on the date (source decay) gets the treatment time
        timed = {"treatment_time": session_start} if getattr(self.driver, "uses_treatment_time", 0) else {}
        program = self.driver.build_program(plan, request.machine, request.beam_tasks, **timed)
        engine = DeliveryEngine(
            program, bus=self.bus, seed=request.seed, session_start=session_start, **self.engine_options
        )
        for hook in self.engine_hooks:
            hook(engine)
        with self._lock:
            self._engine = engine
            pending, self._pending = self._pending, []
        for command in pending:
            command(engine)
        result = engine.run()
        record = None
        if any(unit.delivered for unit in result.units):
            with gc_paused():
                record = self._build_record(plan, result, program)
        return SessionOutcome(result=result, record=record, plan=plan, program=program)

    def _build_record(self, plan: Any, result: DeliveryResult, program: Any) -> Dataset:
        request = self.request
        return self.driver.build_record(
            plan,
            result,
            request.machine,
            treatment_machine_name=self.treatment_machine_name,
            tasks=request.beam_tasks,
            operator_name=request.operator_name,
            referenced_record_uids=request.referenced_record_uids,
            program=program,
            plan_dataset=request.plan_dataset,
        )

    def _send(self, command: Callable[[DeliveryEngine], None]) -> None:
        with self._lock:
            engine = self._engine
            if engine is None:
                self._pending.append(command)
                return
        command(engine)

    def request_stop(self, status: str = "OPERATOR", code: str = "") -> None:
        """Stop the beam and end the session (thread-safe); before the start, it stops at once."""
        self._send(lambda engine: engine.terminate(status=TerminationStatus(status), code=code))

    def interlock(self, code: str, *, latching: bool = True) -> None:
        """Raise a machine interlock (thread-safe): beam off, the session ends MACHINE."""
        self._send(lambda engine: engine.interlock(code, latching=latching))


def deliver(request: SessionRequest, *, bus: EventBus | None = None) -> SessionOutcome:
    """Run one session to its outcome (see :class:`DeliverySession`)."""
    return DeliverySession(request, bus=bus).run()
