"""The virtual device's TDW-II client (TDD side): RO-58..RO-65, journal, retries, storage and events."""

from simulators.dicom.tdd.config import DeviceConfig, DeviceConfigError
from simulators.dicom.tdd.delivery import Deliver, DeliveryProgress, StopToken, session_deliver
from simulators.dicom.tdd.retry import AssociationFailedError, RetryPolicy
from simulators.dicom.tdd.workflow import (
    Device,
    OutcomeState,
    TmsUnavailableError,
    WorkitemOutcome,
    run_device,
)

__all__ = [
    "AssociationFailedError",
    "Deliver",
    "DeliveryProgress",
    "Device",
    "DeviceConfig",
    "DeviceConfigError",
    "OutcomeState",
    "RetryPolicy",
    "StopToken",
    "TmsUnavailableError",
    "WorkitemOutcome",
    "run_device",
    "session_deliver",
]
