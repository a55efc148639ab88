"""One treatment session on one machine: plan in, checked, delivered, record out.

This is the single entry point every front end uses (``rtsim deliver``, the TDD network client, the
scenario runner, the console): it reads the plan, runs the capability check, builds the delivery
program, runs the engine and writes the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydicom import Dataset

from machine_models.schema import MachineModel
from simulators.core.results import DeliveryResult
from simulators.plans.model import BeamTask


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
    summary: dict | None = None

    @property
    def refused(self) -> bool:
        return bool(self.refused_reasons)
