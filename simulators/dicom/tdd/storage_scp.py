"""The device's own Storage SCP: where the OST and the TMS send the plan and the delivery instruction.

RO-59/RO-61 C-MOVE sub-operations arrive here on a second association. Received objects are kept in
memory by SOP Instance UID until the workflow takes them.
"""

from __future__ import annotations

import logging
import threading

from pydicom import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import (
    RTBeamsDeliveryInstructionStorage,
    RTBeamsTreatmentRecordStorage,
    RTBrachyApplicationSetupDeliveryInstructionsStorage,
    RTBrachyTreatmentRecordStorage,
    RTIonPlanStorage,
    RTPlanStorage,
)

LOG = logging.getLogger(__name__)

# What a device accepts as a C-MOVE destination: plans (an ion plan only to refuse it politely), delivery
# instructions, and earlier treatment records (continuation inputs).
STORAGE_CLASSES = (
    RTPlanStorage,
    RTIonPlanStorage,
    RTBeamsDeliveryInstructionStorage,
    RTBrachyApplicationSetupDeliveryInstructionsStorage,
    RTBeamsTreatmentRecordStorage,
    RTBrachyTreatmentRecordStorage,
)

STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000


class ReceivedObjects:
    """Thread-safe store of the instances received by C-STORE, keyed by SOP Instance UID."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, Dataset] = {}
        self._senders: dict[str, str] = {}

    def put(self, ds: Dataset, sender_ae: str = "") -> None:
        uid = str(ds.SOPInstanceUID)
        with self._lock:
            self._objects[uid] = ds
            self._senders[uid] = sender_ae

    def take(self, sop_instance_uid: str) -> Dataset | None:
        """Remove and return the instance (``None`` if it never arrived)."""
        with self._lock:
            self._senders.pop(sop_instance_uid, None)
            return self._objects.pop(sop_instance_uid, None)

    def __contains__(self, sop_instance_uid: object) -> bool:
        with self._lock:
            return sop_instance_uid in self._objects

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


def make_store_handler(store: ReceivedObjects):
    """An ``evt.EVT_C_STORE`` handler that keeps each dataset (with its file meta) in ``store``."""

    def on_c_store(event: evt.Event) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception as exc:  # a broken dataset must not kill the association thread
            LOG.error("C-STORE from %s: cannot decode the dataset: %s", event.assoc.requestor.ae_title, exc)
            return STATUS_CANNOT_UNDERSTAND
        if "SOPInstanceUID" not in ds:
            LOG.error("C-STORE from %s: dataset has no SOP Instance UID", event.assoc.requestor.ae_title)
            return STATUS_CANNOT_UNDERSTAND
        store.put(ds, event.assoc.requestor.ae_title)
        LOG.info(
            "received %s %s from %s",
            ds.get("SOPClassUID", "?"),
            ds.SOPInstanceUID,
            event.assoc.requestor.ae_title,
        )
        return STATUS_SUCCESS

    return on_c_store
