"""One treatment session on one machine: plan in, checked, delivered, record out.

This is the single entry point every front end uses (``rtsim deliver``, the TDD network client, the
scenario runner, the console): it reads the plan, runs the capability check, builds the delivery
program, runs the engine and writes the record.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from pydicom import Dataset

from machine_models.schema import MachineModel
from simulators.core.bus import EventBus
from simulators.core.engine import DeliveryEngine
from simulators.core.results import DeliveryResult
from simulators.devices.linac import build_linac_program
from simulators.errors import PlanRefusedError
from simulators.plans.capability import check_plan
from simulators.plans.dicom_reader import read_plan_dataset
from simulators.plans.model import BeamTask, LinacPlan
from simulators.records.beams_record import build_beams_treatment_record


@dataclass(frozen=True)
class SessionRequest:
    """What to deliver, on which machine, and how.

    ``answers_to`` is the Treatment Machine Name this machine answers to (default: the model's).
    ``beam_tasks`` come from an RT Beams Delivery Instruction (None: every beam of fraction group 1).
    """

    plan_dataset: Dataset
    machine: MachineModel
    source: str = "plan"
    answers_to: str | None = None
    beam_tasks: tuple[BeamTask, ...] | None = None
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
    plan: LinacPlan | None = None
    summary: dict | None = None  # filled by the caller that writes the record (it knows the path)

    @property
    def refused(self) -> bool:
        return bool(self.refused_reasons)


def _check_beam_tasks(plan: LinacPlan, tasks: tuple[BeamTask, ...]) -> list[str]:
    """Refusal reasons for a delivery instruction that does not fit the plan."""
    reasons: list[str] = []
    numbers = {beam.number for beam in plan.beams}
    for task in tasks:
        if task.beam_number not in numbers:
            reasons.append(
                f"delivery instruction: beam task for beam {task.beam_number}, but the plan has beams "
                f"{', '.join(str(n) for n in sorted(numbers))}"
            )
            continue
        beam = plan.beam(task.beam_number)
        if task.delivery_type == "CONTINUATION":
            start = task.start_meterset_mu if task.start_meterset_mu is not None else 0.0
            end = task.end_meterset_mu if task.end_meterset_mu is not None else beam.beam_meterset_mu
            tolerance_mu = 1e-3
            if not (0.0 <= start < end <= beam.beam_meterset_mu + tolerance_mu):
                reasons.append(
                    f"beam {beam.number} ({beam.name}): Continuation Start/End Meterset {start:g}/{end:g} MU "
                    f"not within 0..{beam.beam_meterset_mu:g} MU with start < end"
                )
    return reasons


class DeliverySession:
    """Runs one :class:`SessionRequest` to a :class:`SessionOutcome` on the calling thread (fast clock).

    ``request_stop`` and ``interlock`` may be called from any thread (a network handler, a console):
    they are queued to the simulation thread. Events go to ``bus``.
    """

    def __init__(self, request: SessionRequest, *, bus: EventBus | None = None) -> None:
        self.request = request
        self.bus = bus if bus is not None else EventBus()
        self._lock = threading.Lock()
        self._engine: DeliveryEngine | None = None
        self._pending_stop: tuple[str, str] | None = None

    @property
    def treatment_machine_name(self) -> str:
        return self.request.answers_to or self.request.machine.treatment_machine_name

    def prepare(self) -> tuple[LinacPlan | None, list[str]]:
        """Read and check the plan; return it with every refusal reason (empty when deliverable)."""
        request = self.request
        plan = read_plan_dataset(request.plan_dataset, request.source)
        reasons = check_plan(
            plan,
            request.machine,
            answers_to=self.treatment_machine_name,
            require_approved=request.require_approved,
        )
        if request.beam_tasks:
            reasons += _check_beam_tasks(plan, request.beam_tasks)
        return plan, reasons

    def run(self) -> SessionOutcome:
        """Check, deliver and record. A refused plan returns its reasons and delivers nothing."""
        try:
            plan, reasons = self.prepare()
        except PlanRefusedError as refusal:
            return SessionOutcome(refused_reasons=refusal.reasons)
        if reasons or plan is None:
            return SessionOutcome(refused_reasons=reasons)
        request = self.request
        program = build_linac_program(plan, request.machine, request.beam_tasks)
        session_start = request.session_start or datetime.now().replace(microsecond=0)
        engine = DeliveryEngine(program, bus=self.bus, seed=request.seed, session_start=session_start)
        with self._lock:
            self._engine = engine
            pending = self._pending_stop
        if pending is not None:
            engine.terminate(status=pending[0], code=pending[1])
        result = engine.run()
        record = build_beams_treatment_record(
            plan,
            result,
            request.machine,
            treatment_machine_name=self.treatment_machine_name,
            beam_tasks=request.beam_tasks,
            operator_name=request.operator_name,
            referenced_record_uids=request.referenced_record_uids,
            program=program,
            plan_dataset=request.plan_dataset,
        )
        return SessionOutcome(result=result, record=record, plan=plan)

    def request_stop(self, status: str = "OPERATOR", code: str = "") -> None:
        """Stop the beam and end the session (thread-safe); before the start, stops it at once."""
        with self._lock:
            engine = self._engine
            if engine is None:
                self._pending_stop = (status, code)
                return
        engine.terminate(status=status, code=code)

    def interlock(self, code: str, *, latching: bool = True) -> None:
        """Raise a machine interlock (thread-safe): beam off, session ends MACHINE."""
        with self._lock:
            engine = self._engine
        if engine is not None:
            engine.interlock(code, latching=latching)


def deliver(request: SessionRequest, *, bus: EventBus | None = None) -> SessionOutcome:
    """Run one session to its outcome (see :class:`DeliverySession`)."""
    return DeliverySession(request, bus=bus).run()
