"""The HDR/PDR remote afterloader as a device driver: brachy RT Plan in, RT Brachy Treatment Record out.

Tasks are :class:`~simulators.plans.brachy_model.BrachyTask` items (from the RT Brachy Application Setup
Delivery Instruction); ``None`` delivers every application setup of the first fraction group. The driver
asks for the treatment time (``uses_treatment_time``) to correct dwell times for source decay. Faults:
:mod:`simulators.devices.afterloader_faults`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydicom import Dataset

from machine_models.schema import DeviceKind, MachineModel
from simulators.core.program import DeliveryProgram
from simulators.core.results import DeliveryResult
from simulators.devices.afterloader import build_afterloader_program
from simulators.plans.brachy_capability import check_brachy_plan, check_brachy_tasks
from simulators.plans.brachy_model import BrachyPlan, BrachyTask
from simulators.plans.brachy_reader import read_brachy_plan_dataset
from simulators.records.brachy_record import build_brachy_treatment_record, source_left_safe


class AfterloaderDriver:
    """Reads brachy plans, checks them like an afterloader console, builds programs, writes brachy records."""

    kind = DeviceKind.AFTERLOADER
    workitem_code_value = "121735"  # RT Brachy Treatment
    uses_treatment_time = True

    def read_plan(self, ds: Dataset, source: str) -> BrachyPlan:
        return read_brachy_plan_dataset(ds, source)

    def check_plan(
        self, plan: BrachyPlan, machine: MachineModel, *, answers_to: str, require_approved: bool
    ) -> list[str]:
        return check_brachy_plan(plan, machine, answers_to=answers_to, require_approved=require_approved)

    def check_tasks(self, plan: BrachyPlan, tasks: Sequence[BrachyTask]) -> list[str]:
        return check_brachy_tasks(plan, tasks)

    def build_program(
        self,
        plan: BrachyPlan,
        machine: MachineModel,
        tasks: Sequence[BrachyTask] | None,
        *,
        treatment_time: datetime | None = None,
    ) -> DeliveryProgram:
        return build_afterloader_program(plan, machine, tasks, treatment_time=treatment_time)

    def build_record(
        self,
        plan: BrachyPlan,
        result: DeliveryResult,
        machine: MachineModel,
        *,
        treatment_machine_name: str,
        tasks: Sequence[BrachyTask] | None,
        operator_name: str,
        referenced_record_uids: Sequence[str],
        program: DeliveryProgram,
        plan_dataset: Dataset,
    ) -> Dataset | None:
        """The RT Brachy Treatment Record, or None when no source left the safe (nothing to record)."""
        del plan_dataset  # everything the record needs is in the typed plan
        if not any(source_left_safe(unit) for unit in result.units):
            return None
        return build_brachy_treatment_record(
            plan,
            result,
            machine,
            treatment_machine_name=treatment_machine_name,
            tasks=tasks,
            program=program,
            operator_name=operator_name,
            referenced_record_uids=referenced_record_uids,
        )


AFTERLOADER_DRIVER = AfterloaderDriver()
