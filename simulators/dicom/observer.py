"""Read-only look at a TMS over DICOM: worklist (UPS C-FIND), stored instances (C-FIND), records (C-GET).

Scenario expectations go through here for the embedded TMS and for a user's own TMS alike, so both are
checked over the same DICOM path a TMS tester would use. Every failure is a :class:`ObserverError`
naming the peer, the operation and the instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    RTBeamsTreatmentRecordStorage,
    RTBrachyTreatmentRecordStorage,
    RTIonBeamsTreatmentRecordStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from simulators.dicom import codes
from simulators.dicom.peers import Peer
from simulators.dicom.tms.client import WorklistEntry, list_worklist
from simulators.dicom.tms.config import DEFAULT_CLIENT_AE
from simulators.dicom.tms.scheduler import InputRef
from simulators.errors import RtsimError

RECORD_CLASSES = (
    RTBeamsTreatmentRecordStorage,
    RTBrachyTreatmentRecordStorage,
    RTIonBeamsTreatmentRecordStorage,
)


class ObserverError(RtsimError):
    """A query to the TMS/OST failed (the message names the peer, the operation and the instance)."""


@dataclass(frozen=True)
class TmsObserver:
    """Queries one TMS (UPS) and its OST (storage, Q/R) as ``calling_ae``."""

    tms: Peer
    ost: Peer
    calling_ae: str = DEFAULT_CLIENT_AE
    timeout_s: float = 10.0

    def worklist(self) -> list[WorklistEntry]:
        """Every workitem in every state (UPS C-FIND), in scheduled start order."""
        try:
            return list_worklist(self.tms, calling_ae=self.calling_ae, timeout_s=self.timeout_s)
        except RtsimError as error:
            raise ObserverError(f"worklist C-FIND at {self.tms}: {error}") from None

    def _ae(self, contexts: Iterable[str]) -> AE:
        ae = AE(ae_title=self.calling_ae)
        for timeout in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, timeout, self.timeout_s)
        for uid in contexts:
            ae.add_requested_context(uid)
        return ae

    def stored(self, ref: InputRef) -> bool:
        """Is the instance on the OST? (Study Root C-FIND at IMAGE level with its study/series/instance)."""
        ae = self._ae([StudyRootQueryRetrieveInformationModelFind])
        assoc = ae.associate(self.ost.host, self.ost.port, ae_title=self.ost.ae_title)
        if not assoc.is_established:
            ae.shutdown()
            raise ObserverError(f"C-FIND at {self.ost}: no association as {self.calling_ae}")
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = ref.study_uid
        query.SeriesInstanceUID = ref.series_uid
        query.SOPInstanceUID = ref.sop_instance_uid
        query.SOPClassUID = ""
        found = False
        try:
            for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                if status is None or "Status" not in status:
                    raise ObserverError(f"C-FIND of {ref.sop_instance_uid} at {self.ost}: no response")
                code = int(status.Status)
                if code in (codes.PENDING, codes.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED) and identifier:
                    found = found or str(identifier.get("SOPInstanceUID", "")) == ref.sop_instance_uid
                elif code != codes.SUCCESS:
                    raise ObserverError(
                        f"C-FIND of {ref.sop_instance_uid} at {self.ost}: status 0x{code:04X}"
                    )
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()
        return found

    def retrieve(self, ref: InputRef) -> Dataset | None:
        """C-GET one instance from the OST (None when the OST does not have it)."""
        received: list[Dataset] = []

        def on_store(event) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            return 0x0000

        classes = [ref.sop_class_uid] if ref.sop_class_uid else list(RECORD_CLASSES)
        ae = self._ae([StudyRootQueryRetrieveInformationModelGet])
        for uid in classes:
            ae.add_requested_context(uid)
        roles = [build_role(uid, scp_role=True) for uid in classes]
        assoc = ae.associate(
            self.ost.host,
            self.ost.port,
            ae_title=self.ost.ae_title,
            ext_neg=roles,
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )
        if not assoc.is_established:
            ae.shutdown()
            raise ObserverError(f"C-GET at {self.ost}: no association as {self.calling_ae}")
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = ref.study_uid
        query.SeriesInstanceUID = ref.series_uid
        query.SOPInstanceUID = ref.sop_instance_uid
        try:
            for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
                if status is None or "Status" not in status:
                    raise ObserverError(f"C-GET of {ref.sop_instance_uid} at {self.ost}: no response")
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()
        for ds in received:
            if str(ds.get("SOPInstanceUID", "")) == ref.sop_instance_uid:
                return ds
        return None


def workitems(observer: TmsObserver) -> list[tuple[WorklistEntry, list[InputRef]]]:
    """Every workitem with the instances its Output Information Sequence lists (UPS C-FIND)."""
    from pynetdicom.sop_class import UnifiedProcedureStepPull

    from simulators.dicom.tms.client import entry_from_response, worklist_query
    from simulators.dicom.tms.scheduler import refs_of

    ae = observer._ae([UnifiedProcedureStepPull])
    tms = observer.tms
    assoc = ae.associate(tms.host, tms.port, ae_title=tms.ae_title)
    if not assoc.is_established:
        ae.shutdown()
        raise ObserverError(f"worklist C-FIND at {tms}: no association as {observer.calling_ae}")
    out = []
    try:
        for status, identifier in assoc.send_c_find(worklist_query(), UnifiedProcedureStepPull):
            if status is None or "Status" not in status:
                raise ObserverError(f"worklist C-FIND at {tms}: no response")
            code = int(status.Status)
            if code in (codes.PENDING, codes.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED) and identifier is not None:
                outputs = [
                    ref
                    for item in identifier.get("UnifiedProcedureStepPerformedProcedureSequence") or []
                    for ref in refs_of(item.get("OutputInformationSequence"))
                ]
                out.append((entry_from_response(identifier), outputs))
            elif code != codes.SUCCESS:
                raise ObserverError(f"worklist C-FIND at {tms}: status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    return sorted(out, key=lambda pair: (pair[0].start, pair[0].uid))
