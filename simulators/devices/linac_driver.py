"""The C-arm linac as a device driver: RT Plan beams in, RT Beams Treatment Record out."""

from __future__ import annotations

from collections.abc import Sequence

from pydicom import Dataset

from machine_models.schema import DeviceKind, MachineModel
from simulators.core.program import DeliveryProgram
from simulators.core.results import DeliveryResult
from simulators.devices.linac import build_linac_program
from simulators.plans.capability import check_plan
from simulators.plans.dicom_reader import read_plan_dataset
from simulators.plans.model import BeamTask, LinacPlan
from simulators.records.beams_record import build_beams_treatment_record

CONTINUATION_TOLERANCE_MU = 1e-3


class LinacDriver:
    """Reads linac plans, checks them like a console, builds programs and writes beams records."""

    kind = DeviceKind.LINAC
    workitem_code_value = "121726"  # RT Treatment with Internal Verification

    def read_plan(self, ds: Dataset, source: str) -> LinacPlan:
        return read_plan_dataset(ds, source)

    def check_plan(
        self, plan: LinacPlan, machine: MachineModel, *, answers_to: str, require_approved: bool
    ) -> list[str]:
        return check_plan(plan, machine, answers_to=answers_to, require_approved=require_approved)

    def check_tasks(self, plan: LinacPlan, tasks: Sequence[BeamTask]) -> list[str]:
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
            if task.delivery_type.upper() == "CONTINUATION":
                start = task.start_meterset_mu if task.start_meterset_mu is not None else 0.0
                end = task.end_meterset_mu if task.end_meterset_mu is not None else beam.beam_meterset_mu
                if not (0.0 <= start < end <= beam.beam_meterset_mu + CONTINUATION_TOLERANCE_MU):
                    reasons.append(
                        f"beam {beam.number} ({beam.name}): Continuation Start/End Meterset "
                        f"{start:g}/{end:g} MU not within 0..{beam.beam_meterset_mu:g} MU with start < end"
                    )
        return reasons

    def build_program(
        self, plan: LinacPlan, machine: MachineModel, tasks: Sequence[BeamTask] | None
    ) -> DeliveryProgram:
        return build_linac_program(plan, machine, tasks)

    def build_record(
        self,
        plan: LinacPlan,
        result: DeliveryResult,
        machine: MachineModel,
        *,
        treatment_machine_name: str,
        tasks: Sequence[BeamTask] | None,
        operator_name: str,
        referenced_record_uids: Sequence[str],
        program: DeliveryProgram,
        plan_dataset: Dataset,
    ) -> Dataset:
        return build_beams_treatment_record(
            plan,
            result,
            machine,
            treatment_machine_name=treatment_machine_name,
            beam_tasks=tasks,
            operator_name=operator_name,
            referenced_record_uids=referenced_record_uids,
            program=program,
            plan_dataset=plan_dataset,
        )


LINAC_DRIVER = LinacDriver()
