"""What a device kind must provide, and the registry the session looks drivers up in.

A new kind of device needs a machine model (TOML), a plan reader, a capability check, a program builder
and a record writer: one :class:`DeviceDriver`, registered with :func:`register_driver`. The engine, bus,
state machine, faults API and the network workflow are shared (docs/adding-a-device-kind.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydicom import Dataset

from machine_models.schema import DeviceKind, MachineModel
from simulators.core.program import DeliveryProgram
from simulators.core.results import DeliveryResult
from simulators.errors import RtsimError


class DeviceDriver(Protocol):
    """The per-kind physics and DICOM edges of a device.

    ``tasks`` are what the delivery instruction asks for (e.g. :class:`~simulators.plans.model.BeamTask`
    for a linac); ``None`` means the whole first fraction group.
    """

    kind: DeviceKind
    workitem_code_value: str  # UPS Scheduled Workitem Code this kind performs (DCM)

    def read_plan(self, ds: Dataset, source: str) -> Any:
        """DICOM -> typed plan; PlanReadError / PlanRefusedError for what cannot be used."""
        ...

    def check_plan(
        self, plan: Any, machine: MachineModel, *, answers_to: str, require_approved: bool
    ) -> list[str]:
        """Every reason the machine refuses the plan (empty when deliverable)."""
        ...

    def check_tasks(self, plan: Any, tasks: Sequence[Any]) -> list[str]:
        """Every reason the delivery instruction does not fit the plan."""
        ...

    def build_program(self, plan: Any, machine: MachineModel, tasks: Sequence[Any] | None) -> DeliveryProgram:
        """Typed plan -> segments with durations (kinematics).

        A driver with a true ``uses_treatment_time`` attribute is also passed ``treatment_time=`` (the
        session start, a datetime): the afterloader corrects dwell times for source decay with it.
        """
        ...

    def build_record(
        self,
        plan: Any,
        result: DeliveryResult,
        machine: MachineModel,
        *,
        treatment_machine_name: str,
        tasks: Sequence[Any] | None,
        operator_name: str,
        referenced_record_uids: Sequence[str],
        program: DeliveryProgram,
        plan_dataset: Dataset,
    ) -> Dataset:
        """DeliveryResult -> the DICOM treatment record for the session."""
        ...


_DRIVERS: dict[DeviceKind, DeviceDriver] = {}


class UnsupportedDeviceKindError(RtsimError):
    """No driver is registered for a machine model's kind."""


def register_driver(driver: DeviceDriver) -> DeviceDriver:
    """Make ``driver`` the one used for machines of its kind."""
    _DRIVERS[DeviceKind(driver.kind)] = driver
    return driver


def driver_for(kind: DeviceKind | str) -> DeviceDriver:
    """The driver for a device kind (the bundled kinds register themselves on import)."""
    import simulators.devices.drivers  # noqa: F401  (registers the bundled drivers)

    try:
        return _DRIVERS[DeviceKind(kind)]
    except (KeyError, ValueError):
        known = ", ".join(sorted(str(k) for k in _DRIVERS)) or "none"
        raise UnsupportedDeviceKindError(
            f"no simulator for device kind {kind!r} yet (available: {known})"
        ) from None
