"""TMS-side scheduling: the UPS dataset for one fraction, and the CONTINUATION of an interrupted one.

Continuation (PS3.3 C.8.8.29.1, reference §1.9): when a UPS ends CANCELED and its Output Information
Sequence references a treatment record (on the OST) in which some meterset was delivered, the TMS
schedules a new UPS whose Scheduled Processing Parameter "Treatment Delivery Type" (121740) is
CONTINUATION, with a new RT Beams Delivery Instruction:

* per beam of the original instruction: delivered = the sum of Delivered Primary Meterset over every
  partial record of that fraction (the canceled UPS's outputs plus the records its inputs already
  listed); end = the original task's end (the Beam Meterset for a TREATMENT task);
* delivered >= end: the beam goes to the Omitted Beam Task Sequence as ALREADY_TREATED;
* 0 < delivered < end: a CONTINUATION task from ``delivered`` to ``end`` (Primary Dosimeter Unit set);
* nothing delivered: a TREATMENT task (the beam was not started);
* Current Fraction Number stays the original fraction's.

An afterloader's fraction (RT Brachy Treatment Records) continues the same way with a new RT Brachy
Application Setup Delivery Instruction: per channel the share of its time delivered (all partial records)
gives the Start Cumulative Time Weight still to deliver, fully delivered channels are omitted
(ALREADY_TREATED), and a PDR course resumes in the first pulse not complete
(:func:`simulators.dicom.brachy_instruction.plan_brachy_continuation`).

The new UPS lists the plan (at the OST AE), the new BDI (at the TMS AE) and every partial record of the
fraction (at the OST AE), and names the canceled UPS in its Replaced Procedure Step Sequence. A UPS
canceled with nothing delivered (a refused plan) is not continued; its reason stays on the worklist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from simulators.dicom import codes
from simulators.dicom.bdi import beam_metersets, build_bdi, read_bdi, treatment_beams
from simulators.dicom.brachy_instruction import (
    BrachyInstruction,
    build_brachy_instruction,
    delivered_seconds,
    plan_brachy_continuation,
    read_brachy_instruction,
)
from simulators.dicom.brachy_instruction import default_tasks as default_brachy_tasks
from simulators.dicom.tms.config import TmsConfig
from simulators.dicom.tms.object_store import ObjectStore
from simulators.dicom.tms.ups_store import Outcome, UpsStore
from simulators.errors import PlanReadError
from simulators.plans.model import BeamTask

LOG = logging.getLogger(__name__)

RECORD_CLASSES = (
    codes.RT_BEAMS_TREATMENT_RECORD_STORAGE,
    codes.RT_ION_BEAMS_TREATMENT_RECORD_STORAGE,
    codes.RT_BRACHY_TREATMENT_RECORD_STORAGE,
)
PLAN_CLASSES = (codes.RT_PLAN_STORAGE, codes.RT_ION_PLAN_STORAGE)
DELIVERY_INSTRUCTION_CLASSES = (
    codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE,
    codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE,
)
METERSET_TOLERANCE_MU = 0.005  # below half the last DS digit the records carry (5 decimals: 0.00001)


def dicom_dt(moment: datetime) -> str:
    """DICOM DT with seconds (local wall clock, no offset)."""
    return moment.strftime("%Y%m%d%H%M%S")


def code_item(code: codes.Code) -> Dataset:
    """A code sequence item."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def station_code(station: str) -> codes.Code:
    """The Scheduled Station Name code of a device station (private scheme, value = station name)."""
    return codes.Code(station, codes.STATION_CODING_SCHEME, codes.STATION_CODE_MEANING)


@dataclass(frozen=True, slots=True)
class InputRef:
    """One Input Information Sequence entry: an instance and the AE that serves it."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    retrieve_ae: str


def input_item(ref: InputRef) -> Dataset:
    """An Input/Output Information Sequence item (Type of Instances DICOM, retrieval by AE title)."""
    item = Dataset()
    item.TypeOfInstances = "DICOM"
    item.StudyInstanceUID = ref.study_uid
    item.SeriesInstanceUID = ref.series_uid
    sop = Dataset()
    sop.ReferencedSOPClassUID = ref.sop_class_uid
    sop.ReferencedSOPInstanceUID = ref.sop_instance_uid
    item.ReferencedSOPSequence = Sequence([sop])
    retrieval = Dataset()
    retrieval.RetrieveAETitle = ref.retrieve_ae
    item.DICOMRetrievalSequence = Sequence([retrieval])
    return item


def refs_of(sequence: Iterable[Dataset] | None) -> list[InputRef]:
    """The instance references of an Input or Output Information Sequence."""
    out = []
    for item in sequence or []:
        retrieval = item.get("DICOMRetrievalSequence") or []
        ae = str(retrieval[0].get("RetrieveAETitle", "") or "").strip() if retrieval else ""
        for sop in item.get("ReferencedSOPSequence") or []:
            out.append(
                InputRef(
                    str(sop.get("ReferencedSOPClassUID", "") or ""),
                    str(sop.get("ReferencedSOPInstanceUID", "") or ""),
                    str(item.get("StudyInstanceUID", "") or ""),
                    str(item.get("SeriesInstanceUID", "") or ""),
                    ae,
                )
            )
    return out


def ups_dataset(
    plan: Dataset,
    *,
    station: str,
    inputs: SequenceOf[InputRef],
    label: str,
    start: datetime,
    delivery_type: str = codes.DELIVERY_TYPE_TREATMENT,
    priority: str = codes.PRIORITY_MEDIUM,
    workitem_code: codes.Code = codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION,
    worklist_label: str = codes.DEFAULT_WORKLIST_LABEL,
    replaces: str | None = None,
) -> Dataset:
    """The N-CREATE attribute list of a SCHEDULED treatment UPS for ``plan`` (RO-58 return keys filled)."""
    ds = Dataset()
    ds.SpecificCharacterSet = plan.get("SpecificCharacterSet", "ISO_IR 100")
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        if keyword in plan:
            ds[keyword] = plan[keyword]
        else:
            setattr(ds, keyword, "")
    if "IssuerOfPatientID" in plan:
        ds.IssuerOfPatientID = plan.IssuerOfPatientID
    ds.StudyInstanceUID = plan.StudyInstanceUID
    ds.ProcedureStepState = codes.STATE_SCHEDULED
    ds.ScheduledProcedureStepPriority = priority
    ds.WorklistLabel = worklist_label
    ds.ProcedureStepLabel = label[:64]
    ds.ScheduledProcedureStepStartDateTime = dicom_dt(start)
    ds.ExpectedCompletionDateTime = ""
    ds.InputReadinessState = codes.INPUT_READY
    ds.ScheduledWorkitemCodeSequence = Sequence([code_item(workitem_code)])
    ds.ScheduledStationNameCodeSequence = Sequence([code_item(station_code(station))])
    ds.ScheduledStationClassCodeSequence = Sequence()
    ds.ScheduledStationGeographicLocationCodeSequence = Sequence()
    ds.ScheduledHumanPerformersSequence = Sequence()
    parameter = Dataset()
    parameter.ValueType = "TEXT"
    parameter.ConceptNameCodeSequence = Sequence([code_item(codes.CONCEPT_TREATMENT_DELIVERY_TYPE)])
    parameter.TextValue = delivery_type
    ds.ScheduledProcessingParametersSequence = Sequence([parameter])
    ds.InputInformationSequence = Sequence([input_item(ref) for ref in inputs])
    ds.ProcedureStepProgressInformationSequence = Sequence()
    ds.UnifiedProcedureStepPerformedProcedureSequence = Sequence()
    if replaces:
        replaced = Dataset()
        replaced.ReferencedSOPClassUID = codes.UPS_PUSH_SOP_CLASS
        replaced.ReferencedSOPInstanceUID = replaces
        ds.ReplacedProcedureStepSequence = Sequence([replaced])
    return ds


@dataclass(frozen=True, slots=True)
class ContinuationPlan:
    """What is left of an interrupted fraction."""

    fraction_number: int
    tasks: tuple[BeamTask, ...]
    omitted: tuple[tuple[int, str], ...]
    delivered_mu: dict[int, float]  # beam number -> sum over the partial records


def delivered_by_beam(records: Iterable[Dataset], fraction_number: int) -> dict[int, float]:
    """Sum of Delivered Primary Meterset per beam over the records' items of this fraction."""
    totals: dict[int, float] = {}
    for record in records:
        for item in record.get("TreatmentSessionBeamSequence") or []:
            fraction = item.get("CurrentFractionNumber")
            if fraction not in (None, "") and int(fraction) != fraction_number:
                continue
            if "ReferencedBeamNumber" not in item:
                continue
            beam = int(item.ReferencedBeamNumber)
            value = item.get("DeliveredPrimaryMeterset")
            totals[beam] = totals.get(beam, 0.0) + (float(value) if value not in (None, "") else 0.0)
    return totals


def plan_continuation(
    plan: Dataset,
    original_tasks: SequenceOf[BeamTask],
    records: SequenceOf[Dataset],
    *,
    fraction_number: int,
    tolerance_mu: float = METERSET_TOLERANCE_MU,
) -> ContinuationPlan:
    """The beam tasks that finish ``fraction_number`` given every partial record of it so far."""
    delivered = delivered_by_beam(records, fraction_number)
    tasks: list[BeamTask] = []
    omitted: list[tuple[int, str]] = []
    metersets_by_group: dict[int, dict[int, float]] = {}
    for task in original_tasks:
        group = task.fraction_group_number
        if group not in metersets_by_group:
            metersets_by_group[group] = beam_metersets(plan, group)
        end = (
            task.end_meterset_mu
            if task.end_meterset_mu is not None
            else metersets_by_group[group][task.beam_number]
        )
        done = delivered.get(task.beam_number, 0.0)
        if done >= end - tolerance_mu:
            omitted.append((task.beam_number, codes.OMISSION_ALREADY_TREATED))
        elif done > tolerance_mu:
            tasks.append(
                BeamTask(
                    beam_number=task.beam_number,
                    delivery_type=codes.DELIVERY_TYPE_CONTINUATION,
                    start_meterset_mu=done,
                    end_meterset_mu=end,
                    fraction_number=fraction_number,
                    fraction_group_number=group,
                )
            )
        else:
            tasks.append(
                BeamTask(
                    beam_number=task.beam_number,
                    fraction_number=fraction_number,
                    fraction_group_number=group,
                )
            )
    return ContinuationPlan(fraction_number, tuple(tasks), tuple(omitted), delivered)


class ContinuationScheduler:
    """Schedules the CONTINUATION UPS after a CANCELED one (hooked into the UPS SCP)."""

    def __init__(self, ups: UpsStore, objects: ObjectStore, config: TmsConfig) -> None:
        self.ups = ups
        self.objects = objects
        self.config = config

    def after_final(self, uid: str, state: str) -> Outcome | None:
        """Called after a UPS reached COMPLETED or CANCELED; returns the new UPS's outcome, if any."""
        if state != codes.STATE_CANCELED or not self.config.auto_continue:
            return None
        return self.schedule_continuation(uid)

    def _skip(self, uid: str, why: str) -> None:
        LOG.info("UPS %s CANCELED: not continued (%s)", uid, why)

    def schedule_continuation(self, uid: str, *, now: datetime | None = None) -> Outcome | None:
        """Create the CONTINUATION UPS for the canceled ``uid`` (None when there is nothing to continue)."""
        canceled = self.ups.get(uid)
        if canceled is None or str(canceled.get("ProcedureStepState", "")) != codes.STATE_CANCELED:
            return None
        performed = canceled.get("UnifiedProcedureStepPerformedProcedureSequence") or []
        outputs = [r for item in performed for r in refs_of(item.get("OutputInformationSequence"))]
        output_records = [r for r in outputs if r.sop_class_uid in RECORD_CLASSES]
        if not output_records:
            self._skip(uid, "no treatment record in its Output Information Sequence")
            return None
        inputs = refs_of(canceled.get("InputInformationSequence"))
        input_records = [r for r in inputs if r.sop_class_uid in RECORD_CLASSES]
        record_refs: dict[str, InputRef] = {}
        records: list[Dataset] = []
        for ref in input_records + output_records:
            if ref.sop_instance_uid in record_refs:
                continue
            record = self.objects.read(ref.sop_instance_uid)
            if record is None:
                self._skip(uid, f"treatment record {ref.sop_instance_uid} is not on the OST")
                return None
            record_refs[ref.sop_instance_uid] = ref
            records.append(record)
        session_records = [
            r for r in records if str(r.SOPInstanceUID) in {o.sop_instance_uid for o in output_records}
        ]
        brachy = any(r.sop_class_uid == codes.RT_BRACHY_TREATMENT_RECORD_STORAGE for r in output_records)
        session_mu = (
            delivered_seconds(session_records)  # afterloader: dwell time delivered
            if brachy
            else sum(
                float(item.get("DeliveredPrimaryMeterset") or 0.0)
                for record in session_records
                for item in record.get("TreatmentSessionBeamSequence") or []
            )
        )
        if session_mu <= METERSET_TOLERANCE_MU:
            self._skip(uid, "nothing was delivered in the canceled session")
            return None
        plan_refs = [r for r in inputs if r.sop_class_uid in PLAN_CLASSES]
        if not plan_refs:
            self._skip(uid, "its inputs reference no RT Plan")
            return None
        plan = self.objects.read(plan_refs[0].sop_instance_uid)
        if plan is None:
            self._skip(uid, f"RT Plan {plan_refs[0].sop_instance_uid} is not on the OST")
            return None
        moment = now or datetime.now()
        try:
            if (
                brachy
            ):  # the remaining dwells of an afterloader fraction (simulators.dicom.brachy_instruction)
                instruction = self._brachy_instruction(inputs)
                fraction = instruction.fraction_number if instruction else 1
                original = list(instruction.tasks) if instruction else default_brachy_tasks(plan, fraction)
                brachy_tasks = plan_brachy_continuation(plan, original, records, fraction_number=fraction)
                counts = (len(brachy_tasks), sum(len(t.omitted_channels) for t in brachy_tasks))
            else:
                original_tasks, fraction = self._original_tasks(inputs, plan, records)
                remaining = plan_continuation(plan, original_tasks, records, fraction_number=fraction)
                counts = (len(remaining.tasks), len(remaining.omitted))
        except (PlanReadError, KeyError, ValueError) as error:
            LOG.error("UPS %s CANCELED: continuation cannot be computed: %s", uid, error)
            return None
        if counts[0] == 0:
            self._skip(
                uid, f"every {'channel' if brachy else 'beam'} of fraction {fraction} is already delivered"
            )
            return None
        if brachy:
            bdi = build_brachy_instruction(
                plan,
                fraction_number=fraction,
                tasks=brachy_tasks,
                when=moment,
                source=f"RT Plan {plan.SOPInstanceUID}",
            )
        else:
            bdi = build_bdi(
                plan,
                fraction_number=fraction,
                beam_tasks=remaining.tasks,
                omitted=remaining.omitted,
                when=moment,
                source=f"RT Plan {plan.SOPInstanceUID}",
            )
        self.objects.store_dataset(bdi)
        new_inputs = [
            InputRef(
                str(plan.SOPClassUID),
                str(plan.SOPInstanceUID),
                str(plan.StudyInstanceUID),
                str(plan.get("SeriesInstanceUID", "") or ""),
                self.config.ost_title,
            ),
            InputRef(
                str(bdi.SOPClassUID),
                str(bdi.SOPInstanceUID),
                str(bdi.StudyInstanceUID),
                str(bdi.SeriesInstanceUID),
                self.config.ae_title,
            ),
        ]
        for record in records:
            new_inputs.append(
                InputRef(
                    str(record.SOPClassUID),
                    str(record.SOPInstanceUID),
                    str(record.get("StudyInstanceUID", "") or ""),
                    str(record.get("SeriesInstanceUID", "") or ""),
                    self.config.ost_title,
                )
            )
        station = ""
        stations = canceled.get("ScheduledStationNameCodeSequence") or []
        if stations:
            station = str(stations[0].get("CodeValue", "") or "")
        workitems = canceled.get("ScheduledWorkitemCodeSequence") or []
        workitem = (
            codes.Code(
                str(workitems[0].get("CodeValue", "")),
                str(workitems[0].get("CodingSchemeDesignator", "")),
                str(workitems[0].get("CodeMeaning", "")),
            )
            if workitems
            else codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION
        )
        base_label = str(canceled.get("ProcedureStepLabel", "") or plan.get("RTPlanLabel", "") or "")
        label = base_label if base_label.endswith("(continuation)") else f"{base_label} (continuation)"
        ds = ups_dataset(
            plan,
            station=station,
            inputs=new_inputs,
            label=label.strip(),
            start=moment,
            delivery_type=codes.DELIVERY_TYPE_CONTINUATION,
            priority=str(canceled.get("ScheduledProcedureStepPriority", "") or codes.PRIORITY_MEDIUM),
            workitem_code=workitem,
            worklist_label=str(canceled.get("WorklistLabel", "") or codes.DEFAULT_WORKLIST_LABEL),
            replaces=uid,
        )
        if stations:
            ds.ScheduledStationNameCodeSequence = stations
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            if keyword in canceled:
                ds[keyword] = canceled[keyword]
        outcome = self.ups.create(ds, uid=generate_uid())
        if outcome.ok and outcome.dataset is not None:
            LOG.info(
                "UPS %s CANCELED after %.5g MU (or s): CONTINUATION UPS %s for fraction %d "
                "(%d task(s), %d omitted)",
                uid,
                session_mu,
                outcome.dataset.SOPInstanceUID,
                fraction,
                counts[0],
                counts[1],
            )
        else:
            LOG.error("continuation UPS for %s refused by the store: %s", uid, outcome.comment)
        return outcome

    def _brachy_instruction(self, inputs: list[InputRef]) -> BrachyInstruction | None:
        """The canceled session's brachy delivery instruction, if the TMS still has it."""
        for ref in inputs:
            if ref.sop_class_uid == codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE:
                ds = self.objects.read(ref.sop_instance_uid)
                if ds is not None:
                    return read_brachy_instruction(ds)
        return None

    def _original_tasks(
        self, inputs: list[InputRef], plan: Dataset, records: list[Dataset]
    ) -> tuple[list[BeamTask], int]:
        """The canceled session's beam tasks (from its BDI) and fraction number."""
        for ref in inputs:
            if ref.sop_class_uid == codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE:
                bdi = self.objects.read(ref.sop_instance_uid)
                if bdi is not None:
                    instruction = read_bdi(bdi)
                    tasks = list(instruction.beam_tasks)
                    return tasks, instruction.fraction_number
        fraction = 1
        for record in records:
            for item in record.get("TreatmentSessionBeamSequence") or []:
                if item.get("CurrentFractionNumber") not in (None, ""):
                    fraction = int(item.CurrentFractionNumber)
                    break
        tasks = [BeamTask(beam_number=n, fraction_number=fraction) for n in treatment_beams(plan)]
        return tasks, fraction
