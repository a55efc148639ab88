"""Client side of the embedded TMS, over DICOM only (what ``rtsim tms schedule`` / ``worklist`` call).

Scheduling choices (documented in docs/conformance.md):

* The **client** builds the RT Beams Delivery Instruction (``simulators.dicom.bdi``) and C-STOREs it to
  the TMS AE; the plan is C-STOREd to the OST AE. The UPS N-CREATE then references the plan at the OST
  and the BDI at the TMS (Retrieve AE Title), so any UPS Push SCU could schedule the same way.
* **All fractions are scheduled at once**, one UPS per fraction, each with its own BDI (Current
  Fraction Number) and start date time (``start + k * fraction_interval``); the device takes them in
  start order. Continuations of interrupted fractions are scheduled by the TMS itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    RTBeamsDeliveryInstructionStorage,
    RTBrachyApplicationSetupDeliveryInstructionsStorage,
    RTIonPlanStorage,
    RTPlanStorage,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepPush,
    UnifiedProcedureStepWatch,
    Verification,
)

from simulators.dicom import codes
from simulators.dicom.bdi import build_bdi, fraction_group
from simulators.dicom.brachy_instruction import build_brachy_instruction
from simulators.dicom.peers import Peer
from simulators.dicom.tms.config import DEFAULT_CLIENT_AE
from simulators.dicom.tms.netutil import no_delay_association
from simulators.dicom.tms.scheduler import InputRef, refs_of, ups_dataset
from simulators.errors import RtsimError


class TmsClientError(RtsimError):
    """A TMS request failed; the message names the peer, the operation and the status."""


@dataclass(frozen=True, slots=True)
class ScheduledFraction:
    """One UPS created by :func:`schedule_plan`."""

    ups_uid: str
    bdi_uid: str
    fraction_number: int
    start: datetime
    status: int  # N-CREATE status (0x0000, or 0xB300 = created with modifications)


@dataclass(frozen=True, slots=True)
class WorklistEntry:
    """One workitem as the worklist shows it."""

    uid: str
    state: str
    label: str
    station: str
    start: str
    priority: str
    patient_id: str
    patient_name: str
    delivery_type: str  # TREATMENT / CONTINUATION
    progress_percent: float | None
    reason: str  # why it was canceled ('' otherwise)
    replaces: str  # the UPS this one continues ('' otherwise)
    outputs: tuple[str, ...]  # SOP Instance UIDs in the Output Information Sequence
    inputs: tuple[InputRef, ...]


def _status_text(status: Dataset | None) -> str:
    if status is None or "Status" not in status:
        return "no response (timeout, abort or rejected association)"
    text = f"0x{int(status.Status):04X}"
    comment = status.get("ErrorComment")
    return f"{text} ({comment})" if comment else text


def _associate(
    peer: Peer, calling_ae: str, contexts: Iterable[str], *, tls_args: tuple | None, timeout_s: float
) -> tuple[AE, Association]:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    for uid in contexts:
        ae.add_requested_context(uid)
    kwargs = {"ae_title": peer.ae_title}
    if tls_args is not None:
        kwargs["tls_args"] = tls_args
    assoc = ae.associate(peer.host, peer.port, **kwargs)
    if assoc.is_established:
        no_delay_association(assoc)
    if not assoc.is_established:
        why = "rejected (check the TMS's allowed AE titles)" if assoc.is_rejected else "no association"
        ae.shutdown()
        raise TmsClientError(f"{peer}: cannot associate as {calling_ae}: {why}")
    return ae, assoc


def _close(ae: AE, assoc: Association) -> None:
    if assoc.is_established:
        assoc.release()
    ae.shutdown()


def _with_meta(ds: Dataset) -> Dataset:
    """A copy that can be sent (pynetdicom needs file_meta.TransferSyntaxUID)."""
    out = copy.deepcopy(ds)
    meta = getattr(out, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = out.SOPClassUID
        meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        out.file_meta = meta
    return out


def store(
    peer: Peer,
    datasets: Iterable[Dataset],
    *,
    calling_ae: str = DEFAULT_CLIENT_AE,
    tls_args: tuple | None = None,
    timeout_s: float = 10.0,
) -> None:
    """C-STORE each dataset to ``peer``; TmsClientError names the instance and the status on failure."""
    items = [_with_meta(ds) for ds in datasets]
    if not items:
        return
    classes = list(dict.fromkeys(str(ds.SOPClassUID) for ds in items))
    ae, assoc = _associate(peer, calling_ae, classes, tls_args=tls_args, timeout_s=timeout_s)
    try:
        for ds in items:
            status = assoc.send_c_store(ds)
            if status is None or "Status" not in status or int(status.Status) not in (0x0000, 0xB000, 0xB007):
                raise TmsClientError(f"{peer}: C-STORE of {ds.SOPInstanceUID} failed: {_status_text(status)}")
    finally:
        _close(ae, assoc)


def echo(peer: Peer, *, calling_ae: str = DEFAULT_CLIENT_AE, tls_args: tuple | None = None) -> int:
    """C-ECHO; the status (0x0000 when the TMS is up)."""
    ae, assoc = _associate(peer, calling_ae, [Verification], tls_args=tls_args, timeout_s=10.0)
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status is not None and "Status" in status else -1
    finally:
        _close(ae, assoc)


def schedule_plan(
    plan_ds: Dataset,
    station: str,
    fractions: int = 1,
    *,
    tms: Peer,
    ost: Peer | None = None,
    calling_ae: str = DEFAULT_CLIENT_AE,
    start: datetime | None = None,
    fraction_interval: timedelta = timedelta(days=1),
    first_fraction: int = 1,
    fraction_group_number: int | None = None,
    label: str | None = None,
    priority: str = codes.PRIORITY_MEDIUM,
    workitem_code: codes.Code = codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION,
    tls_args: tuple | None = None,
    timeout_s: float = 10.0,
) -> list[ScheduledFraction]:
    """Put ``fractions`` treatment sessions of ``plan_ds`` on the TMS worklist for ``station``.

    C-STORE the plan to the OST (``ost``, default the TMS), then per fraction build and C-STORE its BDI
    to the TMS and N-CREATE its UPS (UPS Push). Returns the created workitems in fraction order. A brachy
    plan gets an RT Brachy Application Setup Delivery Instruction instead, and workitem code 121735 (RT
    Brachy Treatment) unless another is given.
    """
    source = f"RT Plan {plan_ds.get('SOPInstanceUID', '?')}"
    if str(plan_ds.get("SOPClassUID", "")) not in (RTPlanStorage, RTIonPlanStorage):
        raise TmsClientError(
            f"{source}: SOP Class UID {plan_ds.get('SOPClassUID', '')!r} is not an RT (Ion) Plan"
        )
    if not station.strip() or len(station.strip()) > 16:
        raise TmsClientError(f"station {station!r}: must be 1..16 characters (it is a Code Value)")
    if fractions < 1 or first_fraction < 1:
        raise TmsClientError(
            f"{source}: fractions ({fractions}) and first fraction ({first_fraction}) must be >= 1"
        )
    group = fraction_group(plan_ds, fraction_group_number, source=source)
    planned = group.get("NumberOfFractionsPlanned")
    last = first_fraction + fractions - 1
    if planned not in (None, "") and last > int(planned):
        raise TmsClientError(
            f"{source}: fraction group {group.get('FractionGroupNumber', 1)} plans {int(planned)} "
            f"fraction(s); asked to schedule up to fraction {last}"
        )
    total = int(planned) if planned not in (None, "") else last
    ost_peer = ost or tms
    plan_label = str(plan_ds.get("RTPlanLabel", "") or plan_ds.get("RTPlanName", "") or "RT Plan")
    begin = start or datetime.now().replace(microsecond=0)
    store(ost_peer, [plan_ds], calling_ae=calling_ae, tls_args=tls_args, timeout_s=timeout_s)
    plan_ref = InputRef(
        str(plan_ds.SOPClassUID),
        str(plan_ds.SOPInstanceUID),
        str(plan_ds.StudyInstanceUID),
        str(plan_ds.get("SeriesInstanceUID", "") or ""),
        ost_peer.ae_title,
    )
    brachy = "ApplicationSetupSequence" in plan_ds  # an afterloader plan: brachy instruction and workitem
    if brachy and workitem_code == codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION:
        workitem_code = codes.WORKITEM_RT_BRACHY_TREATMENT
    instruction_class = (
        RTBrachyApplicationSetupDeliveryInstructionsStorage if brachy else RTBeamsDeliveryInstructionStorage
    )
    contexts = [instruction_class, UnifiedProcedureStepPush]
    ae, assoc = _associate(tms, calling_ae, contexts, tls_args=tls_args, timeout_s=timeout_s)
    created: list[ScheduledFraction] = []
    try:
        for offset in range(fractions):
            number = first_fraction + offset
            when = begin + offset * fraction_interval
            build = build_brachy_instruction if brachy else build_bdi
            bdi = build(
                plan_ds,
                fraction_number=number,
                fraction_group_number=fraction_group_number,
                when=when,
                source=source,
            )
            status = assoc.send_c_store(bdi)
            if status is None or "Status" not in status or int(status.Status) != 0:
                raise TmsClientError(
                    f"{tms}: C-STORE of the BDI for fraction {number} failed: {_status_text(status)}"
                )
            bdi_ref = InputRef(
                str(bdi.SOPClassUID),
                str(bdi.SOPInstanceUID),
                str(bdi.StudyInstanceUID),
                str(bdi.SeriesInstanceUID),
                tms.ae_title,
            )
            text = label or f"{plan_label} Fx {number}/{total}"
            ups = ups_dataset(
                plan_ds,
                station=station.strip(),
                inputs=[plan_ref, bdi_ref],
                label=text,
                start=when,
                priority=priority,
                workitem_code=workitem_code,
            )
            uid = generate_uid()
            status, _ = assoc.send_n_create(ups, UnifiedProcedureStepPush, uid)
            if status is None or "Status" not in status or int(status.Status) not in (0x0000, 0xB300):
                raise TmsClientError(
                    f"{tms}: N-CREATE of the UPS for fraction {number} failed: {_status_text(status)}"
                )
            created.append(ScheduledFraction(uid, str(bdi.SOPInstanceUID), number, when, int(status.Status)))
    finally:
        _close(ae, assoc)
    return created


def worklist_query(station: str | None = None, state: str | None = None) -> Dataset:
    """The C-FIND identifier the worklist uses: every state unless given, everything needed to explain it."""
    ds = Dataset()
    ds.SpecificCharacterSet = ""
    ds.SOPInstanceUID = ""
    ds.PatientName = ""
    ds.PatientID = ""
    ds.ProcedureStepState = state or ""
    ds.ProcedureStepLabel = ""
    ds.ScheduledProcedureStepPriority = ""
    ds.ScheduledProcedureStepStartDateTime = ""
    ds.InputReadinessState = ""
    code = Dataset()
    code.CodeValue = station or ""
    code.CodingSchemeDesignator = ""
    code.CodeMeaning = ""
    ds.ScheduledStationNameCodeSequence = Sequence([code])
    ds.ScheduledProcessingParametersSequence = Sequence()
    ds.InputInformationSequence = Sequence()
    ds.ProcedureStepProgressInformationSequence = Sequence()
    ds.UnifiedProcedureStepPerformedProcedureSequence = Sequence()
    ds.ReplacedProcedureStepSequence = Sequence()
    return ds


def entry_from_response(ds: Dataset) -> WorklistEntry:
    """Read one C-FIND response into a :class:`WorklistEntry`."""
    station = ""
    stations = ds.get("ScheduledStationNameCodeSequence") or []
    if stations:
        station = str(stations[0].get("CodeValue", "") or "")
    delivery_type = ""
    for item in ds.get("ScheduledProcessingParametersSequence") or []:
        concept = (item.get("ConceptNameCodeSequence") or [Dataset()])[0]
        if str(concept.get("CodeValue", "")) == codes.CONCEPT_TREATMENT_DELIVERY_TYPE.value:
            delivery_type = str(item.get("TextValue", "") or "")
    progress: float | None = None
    reason = ""
    progress_items = ds.get("ProcedureStepProgressInformationSequence") or []
    if progress_items:
        item = progress_items[0]
        if item.get("ProcedureStepProgress") not in (None, ""):
            progress = float(item.ProcedureStepProgress)
        reason = str(item.get("ReasonForCancellation", "") or "")
        if not reason:
            reasons = item.get("ProcedureStepDiscontinuationReasonCodeSequence") or []
            if reasons:
                reason = str(reasons[0].get("CodeMeaning", "") or reasons[0].get("CodeValue", ""))
    replaces = ""
    replaced = ds.get("ReplacedProcedureStepSequence") or []
    if replaced:
        replaces = str(replaced[0].get("ReferencedSOPInstanceUID", "") or "")
    outputs = tuple(
        ref.sop_instance_uid
        for item in ds.get("UnifiedProcedureStepPerformedProcedureSequence") or []
        for ref in refs_of(item.get("OutputInformationSequence"))
    )
    return WorklistEntry(
        uid=str(ds.get("SOPInstanceUID", "") or ""),
        state=str(ds.get("ProcedureStepState", "") or ""),
        label=str(ds.get("ProcedureStepLabel", "") or ""),
        station=station,
        start=str(ds.get("ScheduledProcedureStepStartDateTime", "") or ""),
        priority=str(ds.get("ScheduledProcedureStepPriority", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        delivery_type=delivery_type,
        progress_percent=progress,
        reason=reason,
        replaces=replaces,
        outputs=outputs,
        inputs=tuple(refs_of(ds.get("InputInformationSequence"))),
    )


def list_worklist(
    tms: Peer,
    *,
    calling_ae: str = DEFAULT_CLIENT_AE,
    station: str | None = None,
    states: Iterable[str] | None = None,
    tls_args: tuple | None = None,
    timeout_s: float = 10.0,
) -> list[WorklistEntry]:
    """C-FIND (UPS Pull) every workitem (all states unless ``states``), in scheduled start order."""
    wanted = {s.strip().upper() for s in states} if states else None
    state_key = next(iter(wanted)) if wanted and len(wanted) == 1 else None
    ae, assoc = _associate(
        tms, calling_ae, [UnifiedProcedureStepPull], tls_args=tls_args, timeout_s=timeout_s
    )
    entries: list[WorklistEntry] = []
    try:
        for status, identifier in assoc.send_c_find(
            worklist_query(station, state_key), UnifiedProcedureStepPull
        ):
            if status is None or "Status" not in status:
                raise TmsClientError(f"{tms}: worklist C-FIND got no response")
            code = int(status.Status)
            if code in (codes.PENDING, codes.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED) and identifier is not None:
                entries.append(entry_from_response(identifier))
            elif code != codes.SUCCESS:
                raise TmsClientError(f"{tms}: worklist C-FIND failed: {_status_text(status)}")
    finally:
        _close(ae, assoc)
    if wanted:
        entries = [e for e in entries if e.state in wanted]
    return sorted(entries, key=lambda e: (e.start, e.uid))


def request_cancel(
    tms: Peer,
    ups_uid: str,
    reason: str = "",
    *,
    calling_ae: str = DEFAULT_CLIENT_AE,
    tls_args: tuple | None = None,
    timeout_s: float = 10.0,
) -> int:
    """N-ACTION Request UPS Cancel (type 2, on the Watch context); returns the status."""
    info = Dataset()
    if reason:
        info.ReasonForCancellation = reason
    ae, assoc = _associate(
        tms, calling_ae, [UnifiedProcedureStepWatch], tls_args=tls_args, timeout_s=timeout_s
    )
    try:
        status, _ = assoc.send_n_action(
            info,
            codes.ACTION_REQUEST_CANCEL,
            UnifiedProcedureStepPush,
            ups_uid,
            meta_uid=UnifiedProcedureStepWatch,
        )
    finally:
        _close(ae, assoc)
    if status is None or "Status" not in status:
        raise TmsClientError(f"{tms}: request cancel of {ups_uid} got no response")
    return int(status.Status)
