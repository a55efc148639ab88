"""A loaded scenario: machines, plans, what to schedule, faults with triggers, scripts, expectations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.faults import Fault
from scenarios.triggers import Trigger

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MachineSpec:
    """One virtual device: ``name`` is its AE title (and station unless given)."""

    name: str
    model: str  # bundled model id, or a TOML path (resolved against the scenario file)
    station: str
    answers_to: str | None = None
    require_approved: bool = True
    interrupt_timeout_s: float = 600.0
    fresh_source: bool = False  # afterloader: a source calibrated as the run starts (exchanged today)


@dataclass(frozen=True)
class PlanSpec:
    """A plan from a file, or from a bundled sample generator (``linac:vmat``) with parameters."""

    name: str
    file: Path | None = None
    sample: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleSpec:
    """Put ``fractions`` sessions of ``plan`` on the TMS worklist for ``machine``'s station (in file order).

    Workitem labels: ``label`` (default the plan name) + `` Fx n`` per fraction; the TMS's continuation of
    an interrupted one is labelled ``<label> Fx n (continuation)``.
    """

    key: str
    plan: str
    machine: str
    fractions: int = 1
    first_fraction: int = 1
    label: str = ""
    priority: str = "MEDIUM"

    def labels(self) -> list[str]:
        base = self.label or self.plan
        return [f"{base} Fx {n}" for n in range(self.first_fraction, self.first_fraction + self.fractions)]


@dataclass(frozen=True)
class FaultSpec:
    """A fault of the library with its parameters, where (machine, session) and when (trigger) it fires."""

    key: str  # e.g. "faults[0]" for messages
    fault: Fault
    machine: str
    session: int
    trigger: Trigger

    def describe(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.fault.params().items())
        return (
            f"{self.fault.name}({params}) on {self.machine} session {self.session} {self.trigger.describe()}"
        )


@dataclass(frozen=True)
class ScriptSpec:
    """The escape hatch: ``function(ctx)`` from a Python file, run as a SimPy process in a session."""

    key: str
    path: Path
    function: str
    machine: str
    session: int = 1


@dataclass(frozen=True)
class Scenario:
    source: str
    name: str
    title: str
    tests: str  # what it tests
    why: str  # why it matters clinically
    seed: int
    machines: tuple[MachineSpec, ...]
    plans: tuple[PlanSpec, ...]
    schedule: tuple[ScheduleSpec, ...]
    faults: tuple[FaultSpec, ...]
    scripts: tuple[ScriptSpec, ...]
    expectations: tuple[Any, ...]
    tags: tuple[str, ...] = ()
