"""Test peers for the embedded TMS: an event receiver / storage SCP, SCU helpers, UPS datasets."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.sop_class import (
    RTBeamsDeliveryInstructionStorage,
    RTBeamsTreatmentRecordStorage,
    RTPlanStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    UnifiedProcedureStepEvent,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepPush,
    UnifiedProcedureStepWatch,
    Verification,
)
from rtsim_testdata import IHE_RO_DIR

from simulators.dicom import codes
from simulators.dicom.peers import Peer
from simulators.dicom.tms.config import TmsConfig
from simulators.dicom.tms.netutil import no_delay, no_delay_association
from simulators.dicom.tms.server import stop_server

TDW = IHE_RO_DIR / "TDW-II" / "Datasets" / "TDW"
PLAN_PATH = TDW / "UPSData" / "RTPlan.dcm"
RECORD1_PATH = TDW / "UPSData" / "Interupted" / "RTRecord1.dcm"
STORAGE = (RTPlanStorage, RTBeamsDeliveryInstructionStorage, RTBeamsTreatmentRecordStorage)
WAIT_S = 10.0


def read_plan() -> Dataset:
    return dcmread(PLAN_PATH, force=True)


class LoopbackScp:
    """A test SCP on 127.0.0.1 (ephemeral port): serve an AE with handlers, abort its associations, stop."""

    def serve(self, ae: AE, handlers: list) -> None:
        self.ae = ae
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.peer = Peer(str(ae.ae_title), "127.0.0.1", int(self.server.server_address[1]))

    def abort_all(self) -> None:
        for assoc in list(self.server.active_associations):
            assoc.abort()

    def stop(self) -> None:
        stop_server(self.server)
        self.ae.shutdown()


@dataclass
class Peerling:
    """A device-like AE: UPS Event receiver and Storage SCP (C-MOVE destination), on an ephemeral port."""

    ae_title: str
    events: list[tuple[int, str, Dataset]] = field(default_factory=list)
    stored: list[Dataset] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ae: AE | None = None
    _server: object | None = None
    port: int = 0

    def start(self) -> Peerling:
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(UnifiedProcedureStepEvent, scu_role=False, scp_role=True)
        ae.add_supported_context(Verification)
        for uid in STORAGE:
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)

        def on_report(event):
            with self._cond:
                self.events.append(
                    (event.event_type, str(event.request.AffectedSOPInstanceUID), event.event_information)
                )
                self._cond.notify_all()
            return 0x0000, None

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            with self._cond:
                self.stored.append(ds)
                self._cond.notify_all()
            return 0x0000

        handlers = [(evt.EVT_N_EVENT_REPORT, on_report), (evt.EVT_C_STORE, on_store)]
        self._server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self._ae = ae
        no_delay(self._server.socket)
        self.port = int(self._server.server_address[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            stop_server(self._server)
        if self._ae is not None:
            self._ae.shutdown()

    @property
    def peer(self) -> Peer:
        return Peer(self.ae_title, "127.0.0.1", self.port)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout_s)

    def events_of(self, event_type: int, uid: str | None = None) -> list[Dataset]:
        with self._cond:
            return [info for t, u, info in self.events if t == event_type and (uid is None or u == uid)]


def make_config(data_dir: Path, *peers: Peer, **overrides) -> TmsConfig:
    allowed = overrides.pop("allowed_ae_titles", ("RTSIM", "TDD", "TDD2", "WATCHER", "OTHER"))
    return TmsConfig(data_dir=data_dir, port=0, peers=tuple(peers), allowed_ae_titles=allowed, **overrides)


@contextmanager
def association(
    port: int, ae_title: str = "TDD", called: str = "TMS", *, get_roles: bool = False, tls_args=None
) -> Iterator:
    """An association with the UPS, Q/R and RT storage contexts (and C-GET SCP roles if asked)."""
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT_S
    for uid in (
        Verification,
        UnifiedProcedureStepPush,
        UnifiedProcedureStepPull,
        UnifiedProcedureStepWatch,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
        *STORAGE,
    ):
        ae.add_requested_context(uid)
    ext = [build_role(uid, scp_role=True) for uid in STORAGE] if get_roles else []
    handlers = []
    received: list[Dataset] = []
    if get_roles:

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            return 0x0000

        handlers = [(evt.EVT_C_STORE, on_store)]
    kwargs = {"tls_args": tls_args} if tls_args else {}
    assoc = ae.associate("127.0.0.1", port, ae_title=called, ext_neg=ext, evt_handlers=handlers, **kwargs)
    if assoc.is_established:
        no_delay_association(assoc)
    assoc.received = received
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def status_of(result) -> int:
    """The Status of a (status, dataset) pair or a status dataset (-1 when there is none)."""
    status = result[0] if isinstance(result, tuple) else result
    return int(status.Status) if status is not None and "Status" in status else -1


def code(value: str, scheme: str = "DCM", meaning: str = "") -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def ups_attributes(station: str = "LINAC1", start: str = "20240315090000", label: str = "Fx 1") -> Dataset:
    """A minimal valid N-CREATE attribute list."""
    ds = Dataset()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "PID-1"
    ds.ProcedureStepState = codes.STATE_SCHEDULED
    ds.ScheduledProcedureStepPriority = "MEDIUM"
    ds.WorklistLabel = "RTSIM"
    ds.ProcedureStepLabel = label
    ds.ScheduledProcedureStepStartDateTime = start
    ds.InputReadinessState = "READY"
    ds.ScheduledWorkitemCodeSequence = Sequence(
        [code("121726", "DCM", "RT Treatment with Internal Verification")]
    )
    ds.ScheduledStationNameCodeSequence = Sequence([code(station, "RTSIM", "Scheduled Station Name")])
    ds.InputInformationSequence = Sequence()
    return ds


def state_info(state: str, transaction_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.ProcedureStepState = state
    if transaction_uid is not None:
        ds.TransactionUID = transaction_uid
    return ds


def final_update(
    transaction_uid: str, station: str = "LINAC1", outputs: list[Dataset] | None = None
) -> Dataset:
    """An RO-64-style final N-SET modification list."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    progress = Dataset()
    progress.ProcedureStepProgress = "100"
    ds.ProcedureStepProgressInformationSequence = Sequence([progress])
    performed = Dataset()
    performed.PerformedStationNameCodeSequence = Sequence([code(station, "RTSIM", "Performed Station Name")])
    performed.PerformedProcedureStepStartDateTime = "20240315090000"
    performed.PerformedProcedureStepEndDateTime = "20240315091000"
    performed.PerformedWorkitemCodeSequence = Sequence([code("121726")])
    items = []
    for record in outputs or []:
        item = Dataset()
        item.TypeOfInstances = "DICOM"
        item.StudyInstanceUID = record.StudyInstanceUID
        item.SeriesInstanceUID = record.SeriesInstanceUID
        ref = Dataset()
        ref.ReferencedSOPClassUID = record.SOPClassUID
        ref.ReferencedSOPInstanceUID = record.SOPInstanceUID
        item.ReferencedSOPSequence = Sequence([ref])
        retrieval = Dataset()
        retrieval.RetrieveAETitle = "TMS"
        item.DICOMRetrievalSequence = Sequence([retrieval])
        items.append(item)
    performed.OutputInformationSequence = Sequence(items)
    ds.UnifiedProcedureStepPerformedProcedureSequence = Sequence([performed])
    return ds


def n_action(assoc, info: Dataset, action: int, uid: str, *, meta=UnifiedProcedureStepPull, sop_class=None):
    return assoc.send_n_action(info, action, sop_class or UnifiedProcedureStepPush, uid, meta_uid=meta)


def n_set(assoc, mods: Dataset, uid: str, *, sop_class=None):
    return assoc.send_n_set(
        mods, sop_class or UnifiedProcedureStepPush, uid, meta_uid=UnifiedProcedureStepPull
    )


def n_get(assoc, tags: list[int], uid: str):
    return assoc.send_n_get(tags, UnifiedProcedureStepPush, uid, meta_uid=UnifiedProcedureStepPull)


def find(assoc, identifier: Dataset, model=UnifiedProcedureStepPull) -> tuple[list[Dataset], int]:
    """All pending identifiers and the final status."""
    found, final = [], -1
    for status, ds in assoc.send_c_find(identifier, model):
        code_value = status_of(status)
        if code_value in (0xFF00, 0xFF01):
            found.append(ds)
        else:
            final = code_value
    return found, final
