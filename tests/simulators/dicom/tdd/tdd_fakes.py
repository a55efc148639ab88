"""Test doubles for the TDD client: a minimal UPS/Q-R/Storage SCP, a fake delivery, a local BDI parser.

The fake SCP enforces what a strict TMS would (PS3.4 CC: Transaction UID lock, 0xC302 on a second
claim, 0xC301 on a wrong Transaction UID, final-state requirements 0xC304, no Transaction UID in
C-FIND) and records every request so tests can check message contents.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from datetime import datetime

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    RTBeamsDeliveryInstructionStorage,
    RTBeamsTreatmentRecordStorage,
    RTPlanStorage,
    StudyRootQueryRetrieveInformationModelMove,
    UnifiedProcedureStepEvent,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepPush,
    UnifiedProcedureStepWatch,
    Verification,
)

from machine_models.schema import DeviceKind, MachineModel
from simulators.core.results import DeliveredControlPoint, DeliveryResult, TerminationStatus, UnitResult
from simulators.devices.session import SessionOutcome, SessionRequest
from simulators.dicom.tdd.delivery import DeliveryProgress, StopToken
from simulators.dicom.tdd.listener import serve_in_background

RT_BEAMS_RECORD = "1.2.840.10008.5.1.4.1.1.481.4"


def with_file_meta(ds: Dataset) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def machine(name: str = "CDMS-LAB-CK") -> MachineModel:
    return MachineModel(
        schema_version=1,
        model_id="TEST_LINAC",
        kind=DeviceKind.LINAC,
        manufacturer="rtsim",
        model_name="Test linac",
        treatment_machine_name=name,
        description="test double",
        source_file=None,
    )


# --------------------------------------------------------------------------------------------------
# a hand-made BDI (the TMS side builds real ones with simulators.dicom.bdi.build_bdi)
def make_bdi(plan: Dataset, beams: list[int], fraction: int = 1, omitted: tuple[int, ...] = ()) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = RTBeamsDeliveryInstructionStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = plan.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "PLAN"
    ds.PatientName = plan.get("PatientName", "")
    ds.PatientID = plan.get("PatientID", "")
    ref = Dataset()
    ref.ReferencedSOPClassUID = plan.SOPClassUID
    ref.ReferencedSOPInstanceUID = plan.SOPInstanceUID
    ds.ReferencedRTPlanSequence = Sequence([ref])
    tasks = []
    for order, number in enumerate(beams, start=1):
        task = Dataset()
        task.BeamTaskType = "TREAT"
        task.TreatmentDeliveryType = "TREATMENT"
        task.CurrentFractionNumber = fraction
        task.ReferencedFractionGroupNumber = 1
        task.ReferencedBeamNumber = number
        task.BeamOrderIndex = order
        tasks.append(task)
    ds.BeamTaskSequence = Sequence(tasks)
    if omitted:
        items = []
        for number in omitted:
            item = Dataset()
            item.ReferencedBeamNumber = number
            item.ReasonForOmission = "ALREADY_TREATED"
            items.append(item)
        ds.OmittedBeamTaskSequence = Sequence(items)
    return with_file_meta(ds)


# --------------------------------------------------------------------------------------------------
def make_workitem(
    *,
    station: str,
    start: datetime,
    plan: Dataset,
    plan_ae: str,
    bdi: Dataset | None,
    bdi_ae: str,
    priority: str = "MEDIUM",
    workitem_code: str = "121726",
    label: str = "DELIVER",
) -> Dataset:
    """A SCHEDULED UPS shaped like the IHE-RO Cache/TDW-RO-58-C-FIND-Rsp.dcm."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UnifiedProcedureStepPush
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = plan.get("PatientName", "")
    ds.PatientID = plan.get("PatientID", "")
    ds.StudyInstanceUID = plan.StudyInstanceUID
    ds.ScheduledProcedureStepStartDateTime = start.strftime("%Y%m%d%H%M%S")
    ds.ScheduledProcedureStepPriority = priority
    ds.WorklistLabel = "UPS"
    ds.ProcedureStepLabel = label
    ds.ProcedureStepState = "SCHEDULED"
    ds.InputReadinessState = "READY"
    code = Dataset()
    code.CodeValue = workitem_code
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "RT Treatment with Internal Verification"
    ds.ScheduledWorkitemCodeSequence = Sequence([code])
    st = Dataset()
    st.CodeValue = station
    st.CodingSchemeDesignator = "RTSIM"
    st.CodeMeaning = "Scheduled Station Name"
    ds.ScheduledStationNameCodeSequence = Sequence([st])
    param = Dataset()
    param.ValueType = "TEXT"
    concept = Dataset()
    concept.CodeValue = "121740"
    concept.CodingSchemeDesignator = "DCM"
    concept.CodeMeaning = "Treatment Delivery Type"
    param.ConceptNameCodeSequence = Sequence([concept])
    param.TextValue = "TREATMENT"
    ds.ScheduledProcessingParametersSequence = Sequence([param])
    inputs = []
    for obj, ae in ((bdi, bdi_ae), (plan, plan_ae)):
        if obj is None:
            continue
        item = Dataset()
        item.TypeOfInstances = "DICOM"
        item.StudyInstanceUID = obj.StudyInstanceUID
        item.SeriesInstanceUID = obj.SeriesInstanceUID
        ref = Dataset()
        ref.ReferencedSOPClassUID = obj.SOPClassUID
        ref.ReferencedSOPInstanceUID = obj.SOPInstanceUID
        item.ReferencedSOPSequence = Sequence([ref])
        retrieval = Dataset()
        retrieval.RetrieveAETitle = ae
        item.DICOMRetrievalSequence = Sequence([retrieval])
        inputs.append(item)
    ds.InputInformationSequence = Sequence(inputs)
    return ds


# --------------------------------------------------------------------------------------------------
def _code_value(ds: Dataset, keyword: str) -> str:
    seq = ds.get(keyword)
    return str(seq[0].get("CodeValue", "")) if seq else ""


def _in_range(value: str, matcher: str) -> bool:
    if not matcher:
        return True
    if "-" not in matcher:
        return value.startswith(matcher)
    low, high = matcher.split("-", 1)
    v = value[:14]
    return (not low or v >= low[:14]) and (not high or v <= high[:14])


@dataclass
class Request:
    """One request the fake received (for content checks)."""

    kind: str  # C-FIND, N-ACTION, N-SET, C-MOVE, C-STORE
    calling_ae: str
    ups_uid: str = ""
    action_type: int = 0
    dataset: Dataset | None = None
    status: int = 0
    context_uid: str = ""
    requested_class_uid: str = ""


@dataclass
class FakePeer:
    """A UPS SCP (Pull/Watch + Event sender), Study Root MOVE SCP and Storage SCP on 127.0.0.1:0."""

    ae_title: str
    workitems: dict[str, Dataset] = field(default_factory=dict)
    objects: dict[str, Dataset] = field(default_factory=dict)  # what C-MOVE can send
    stored: dict[str, Dataset] = field(default_factory=dict)  # what C-STORE received
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)  # AE table
    store_failures: int = 0  # fail the next N C-STOREs with 0xA700
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._txn: dict[str, str] = {}
        self._subscribers: dict[str, set[str]] = {}
        self.event_threads: list[threading.Thread] = []
        ae = AE(ae_title=self.ae_title)
        for cx in (
            UnifiedProcedureStepPull,
            UnifiedProcedureStepWatch,
            UnifiedProcedureStepPush,
            Verification,
            StudyRootQueryRetrieveInformationModelMove,
            RTBeamsTreatmentRecordStorage,
        ):
            ae.add_supported_context(cx)
        for cx in (RTPlanStorage, RTBeamsDeliveryInstructionStorage):
            ae.add_requested_context(cx)
        handlers = [
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_N_ACTION, self._on_action),
            (evt.EVT_N_SET, self._on_set),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self.server = serve_in_background(ae, ("127.0.0.1", 0), handlers)
        self.port = int(self.server.server_address[1])

    def close(self) -> None:
        for thread in self.event_threads:
            thread.join(timeout=10)
        self.server.shutdown()

    # -- helpers ----------------------------------------------------------------------------------
    def add_workitem(self, ds: Dataset) -> str:
        with self._lock:
            self.workitems[str(ds.SOPInstanceUID)] = ds
        return str(ds.SOPInstanceUID)

    def state(self, ups_uid: str) -> str:
        with self._lock:
            return str(self.workitems[ups_uid].ProcedureStepState)

    def of_kind(self, kind: str, action_type: int | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.kind == kind and (action_type is None or r.action_type == action_type)
            ]

    def _log(self, request: Request) -> Request:
        with self._lock:
            self.requests.append(request)
        return request

    # -- C-FIND -----------------------------------------------------------------------------------
    def _on_find(self, event):
        ident = event.identifier
        self._log(
            Request(
                "C-FIND",
                event.assoc.requestor.ae_title,
                dataset=ident,
                context_uid=event.context.abstract_syntax,
            )
        )
        state = str(ident.get("ProcedureStepState", "") or "")
        station = _code_value(ident, "ScheduledStationNameCodeSequence")
        workitem = _code_value(ident, "ScheduledWorkitemCodeSequence")
        when = str(ident.get("ScheduledProcedureStepStartDateTime", "") or "")
        with self._lock:
            matches = [copy.deepcopy(ds) for ds in self.workitems.values()]
        for ds in matches:
            if state and ds.ProcedureStepState != state:
                continue
            if station and _code_value(ds, "ScheduledStationNameCodeSequence") != station:
                continue
            if workitem and _code_value(ds, "ScheduledWorkitemCodeSequence") != workitem:
                continue
            if not _in_range(str(ds.ScheduledProcedureStepStartDateTime), when):
                continue
            if "TransactionUID" in ds:
                del ds.TransactionUID
            yield 0xFF00, ds
        yield 0x0000, None

    # -- N-ACTION ---------------------------------------------------------------------------------
    def _on_action(self, event):
        req = event.request
        ups = str(req.RequestedSOPInstanceUID)
        action = int(req.ActionTypeID)
        info = event.action_information
        record = self._log(
            Request(
                "N-ACTION",
                event.assoc.requestor.ae_title,
                ups,
                action,
                info,
                context_uid=event.context.abstract_syntax,
                requested_class_uid=str(req.RequestedSOPClassUID),
            )
        )
        status, reply = self._action(ups, action, info)
        record.status = status
        return status, reply

    def _action(self, ups: str, action: int, info: Dataset):
        with self._lock:
            if action == 3:
                receiver = str(info.get("ReceivingAE", "")).strip()
                if receiver not in self.destinations:
                    return 0xC308, None
                self._subscribers.setdefault(ups, set()).add(receiver)
                return 0x0000, None
            if action == 4:
                self._subscribers.get(ups, set()).discard(str(info.get("ReceivingAE", "")).strip())
                return 0x0000, None
            ds = self.workitems.get(ups)
            if ds is None:
                return 0xC307, None
            current = str(ds.ProcedureStepState)
            if action == 2:
                if current != "IN PROGRESS":
                    return 0xC310, None
                self._send_cancel_requested(ups, info)
                return 0x0000, None
            if action != 1:
                return 0xC314, None
            wanted = str(info.get("ProcedureStepState", ""))
            txn = str(info.get("TransactionUID", "") or "")
            if wanted == "IN PROGRESS":
                if current == "SCHEDULED":
                    if not txn:
                        return 0xC301, None
                    ds.ProcedureStepState = "IN PROGRESS"
                    self._txn[ups] = txn
                    reply = Dataset()
                    reply.ProcedureStepState = "IN PROGRESS"
                    return 0x0000, reply
                return (0xC302 if current == "IN PROGRESS" else 0xC300), None
            if wanted in ("COMPLETED", "CANCELED"):
                if current == "SCHEDULED":
                    return 0xC310, None
                if current == wanted:
                    return (0xB306 if wanted == "COMPLETED" else 0xB304), None
                if current in ("COMPLETED", "CANCELED"):
                    return (0xC311 if current == "COMPLETED" else 0xC300), None
                if txn != self._txn.get(ups):
                    return 0xC301, None
                if not self._final_state_met(ds, wanted):
                    return 0xC304, None
                ds.ProcedureStepState = wanted
                reply = Dataset()
                reply.ProcedureStepState = wanted
                reply.TransactionUID = txn
                return 0x0000, reply
            return 0xC303, None

    @staticmethod
    def _final_state_met(ds: Dataset, wanted: str) -> bool:
        """PS3.4 Table CC.2.5-3 (the parts the device supplies)."""
        if wanted == "COMPLETED":
            performed = ds.get("UnifiedProcedureStepPerformedProcedureSequence")
            if not performed:
                return False
            item = performed[0]
            return all(
                k in item
                for k in (
                    "PerformedStationNameCodeSequence",
                    "PerformedProcedureStepStartDateTime",
                    "PerformedProcedureStepEndDateTime",
                    "PerformedWorkitemCodeSequence",
                    "OutputInformationSequence",
                )
            )
        progress = ds.get("ProcedureStepProgressInformationSequence")
        if not progress:
            return False
        return all(
            k in progress[0]
            for k in ("ProcedureStepCancellationDateTime", "ProcedureStepDiscontinuationReasonCodeSequence")
        )

    def _send_cancel_requested(self, ups: str, info: Dataset) -> None:
        event_info = Dataset()
        event_info.RequestingAE = self.ae_title
        if "ReasonForCancellation" in info:
            event_info.ReasonForCancellation = info.ReasonForCancellation
        if "ProcedureStepDiscontinuationReasonCodeSequence" in info:
            event_info.ProcedureStepDiscontinuationReasonCodeSequence = copy.deepcopy(
                info.ProcedureStepDiscontinuationReasonCodeSequence
            )
        for receiver in sorted(self._subscribers.get(ups, set())):
            host, port = self.destinations[receiver]
            thread = threading.Thread(
                target=self._event_report, args=(receiver, host, port, ups, event_info), daemon=True
            )
            self.event_threads.append(thread)
            thread.start()

    def _event_report(self, receiver: str, host: str, port: int, ups: str, info: Dataset) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(UnifiedProcedureStepEvent)
        role = build_role(UnifiedProcedureStepEvent, scp_role=True, scu_role=False)
        assoc = ae.associate(host, port, ae_title=receiver, ext_neg=[role])
        if assoc.is_established:
            assoc.send_n_event_report(
                info, 2, UnifiedProcedureStepPush, ups, meta_uid=UnifiedProcedureStepEvent
            )
            assoc.release()

    # -- N-SET ------------------------------------------------------------------------------------
    def _on_set(self, event):
        req = event.request
        ups = str(req.RequestedSOPInstanceUID)
        mods = event.modification_list
        record = self._log(
            Request(
                "N-SET",
                event.assoc.requestor.ae_title,
                ups,
                0,
                mods,
                context_uid=event.context.abstract_syntax,
                requested_class_uid=str(req.RequestedSOPClassUID),
            )
        )
        with self._lock:
            ds = self.workitems.get(ups)
            if ds is None:
                record.status = 0xC307
            elif ds.ProcedureStepState in ("COMPLETED", "CANCELED"):
                record.status = 0xC300
            elif ds.ProcedureStepState == "IN PROGRESS" and mods.get("TransactionUID") != self._txn.get(ups):
                record.status = 0xC301
            else:
                for elem in mods:
                    if elem.keyword != "TransactionUID":
                        ds[elem.tag] = copy.deepcopy(elem)
                record.status = 0x0000
        return record.status, None

    # -- C-MOVE -----------------------------------------------------------------------------------
    def _on_move(self, event):
        ident = event.identifier
        self._log(Request("C-MOVE", event.assoc.requestor.ae_title, dataset=ident))
        destination = self.destinations.get(
            event.move_destination.strip()
            if isinstance(event.move_destination, str)
            else event.move_destination.decode().strip()
        )
        if destination is None:
            yield None, None
            return
        yield destination
        uids = ident.SOPInstanceUID
        uids = [uids] if isinstance(uids, str) else list(uids)
        found = [self.objects[u] for u in uids if u in self.objects]
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    # -- C-STORE ----------------------------------------------------------------------------------
    def _on_store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        record = self._log(Request("C-STORE", event.assoc.requestor.ae_title, dataset=ds))
        with self._lock:
            if self.store_failures > 0:
                self.store_failures -= 1
                record.status = 0xA700
                return 0xA700
            self.stored[str(ds.SOPInstanceUID)] = ds
        return 0x0000


# --------------------------------------------------------------------------------------------------
def make_record(
    plan: Dataset, units: list[UnitResult], status: TerminationStatus, fraction: int = 1
) -> Dataset:
    """A small RT Beams Treatment Record (stand-in for the record writer)."""
    ds = Dataset()
    ds.SOPClassUID = RT_BEAMS_RECORD
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = plan.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "RTRECORD"
    ds.PatientName = plan.get("PatientName", "")
    ds.PatientID = plan.get("PatientID", "")
    ref = Dataset()
    ref.ReferencedSOPClassUID = plan.SOPClassUID
    ref.ReferencedSOPInstanceUID = plan.SOPInstanceUID
    ds.ReferencedRTPlanSequence = Sequence([ref])
    beams = []
    for unit in units:
        item = Dataset()
        item.ReferencedBeamNumber = unit.number
        item.CurrentFractionNumber = fraction
        item.TreatmentTerminationStatus = str(unit.termination_status)
        item.SpecifiedPrimaryMeterset = f"{unit.specified_meterset:.2f}"
        item.DeliveredPrimaryMeterset = f"{unit.delivered_meterset:.2f}"
        beams.append(item)
    ds.TreatmentSessionBeamSequence = Sequence(beams)
    return ds  # no file meta on purpose: the device must add it before C-STORE


def plan_beams(plan: Dataset) -> dict[int, float]:
    metersets = {}
    for ref in plan.FractionGroupSequence[0].ReferencedBeamSequence:
        metersets[int(ref.ReferencedBeamNumber)] = float(ref.BeamMeterset)
    return metersets


@dataclass
class FakeDeliver:
    """Delivers ``request.beam_tasks`` (or every beam) instantly, reporting progress per beam.

    ``interrupt_beam``: the beam at which the machine interlocks (MACHINE) half way;
    ``block_beam``: the beam at which delivery waits for a stop request (then OPERATOR, half way).
    """

    interrupt_beam: int | None = None
    block_beam: int | None = None
    requests: list[SessionRequest] = field(default_factory=list)
    beam_started: threading.Event = field(default_factory=threading.Event)

    def __call__(self, request: SessionRequest, stop: StopToken, progress) -> SessionOutcome:
        self.requests.append(request)
        plan = request.plan_dataset
        if request.require_approved and plan.get("ApprovalStatus", "") != "APPROVED":
            return SessionOutcome(
                refused_reasons=[
                    f"{request.source}: Approval Status (300E,0002) is "
                    f"{plan.get('ApprovalStatus', 'absent')}, not APPROVED"
                ]
            )
        stopped = threading.Event()
        stop_status: list[str] = []

        def on_stop(status: str, code: str) -> None:
            stop_status.append(status)
            stopped.set()

        stop.bind(on_stop)
        metersets = plan_beams(plan)
        tasks = {t.beam_number: t for t in request.beam_tasks} if request.beam_tasks else {}
        numbers = list(tasks) if tasks else list(metersets)

        def session_mu(number: int) -> float:  # a CONTINUATION delivers only from start to end
            task = tasks.get(number)
            if task is None or task.start_meterset_mu is None:
                return metersets[number]
            return (task.end_meterset_mu or metersets[number]) - task.start_meterset_mu

        total = sum(session_mu(n) for n in numbers)
        done = 0.0
        units = []
        status = TerminationStatus.NORMAL
        for index, number in enumerate(numbers):
            spec = metersets[number]
            if status is not TerminationStatus.NORMAL:
                units.append(self._unit(number, spec, 0.0, status, started=False))
                continue
            progress(DeliveryProgress(number, index, len(numbers), done / total))
            delivered = session_mu(number)
            unit_status = TerminationStatus.NORMAL
            if number == self.block_beam:
                progress(DeliveryProgress(number, index, len(numbers), (done + delivered / 2) / total))
                self.beam_started.set()
                assert stopped.wait(20), "test double: no stop request arrived"
                delivered /= 2
                unit_status = TerminationStatus(stop_status[0])
            elif number == self.interrupt_beam:
                delivered /= 2
                unit_status = TerminationStatus.MACHINE
            done += delivered
            progress(DeliveryProgress(number, index, len(numbers), done / total))
            units.append(self._unit(number, spec, delivered, unit_status))
            status = unit_status
        result = DeliveryResult(
            machine_id=request.machine.model_id,
            device_kind="linac",
            session_start=request.session_start or datetime(2026, 1, 1),
            seed=request.seed,
            units=tuple(units),
            termination_status=status,
            termination_code="INTLK-1" if status is TerminationStatus.MACHINE else "",
            end_time_s=60.0,
        )
        fraction = request.beam_tasks[0].fraction_number if request.beam_tasks else 1
        record = make_record(plan, [u for u in units if u.delivered], status, fraction)
        return SessionOutcome(result=result, record=record, summary={"ok": True})

    @staticmethod
    def _unit(
        number: int, spec: float, delivered: float, status: TerminationStatus, started: bool = True
    ) -> UnitResult:
        return UnitResult(
            number=number,
            name=f"beam {number}",
            meterset_unit="MU",
            specified_meterset=spec,
            delivered_meterset=delivered,
            termination_status=status,
            termination_code="",
            start_time_s=0.0,
            end_time_s=1.0,
            beam_on_time_s=1.0,
            limiting_axis_share={},
            control_points=(DeliveredControlPoint(0, 0.0, 0.0, 0.0, 600.0, 600.0, {}),),
            delivered=started,
        )
