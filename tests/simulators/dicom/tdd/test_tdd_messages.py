"""TDW-II message contents (RO-58..RO-65) against the IHE-RO test-tool datasets and PS3.4 CC rules."""

from __future__ import annotations

from datetime import date, datetime

import pydicom
import pytest
from pydicom import Dataset
from rtsim_testdata import IHE_RO_DIR

from simulators.dicom import codes
from simulators.dicom.codes import Code
from simulators.dicom.tdd import messages as msg

TDW = IHE_RO_DIR / "TDW-II" / "Datasets" / "TDW"
STATION = Code("TDD", "TMS", "TDD StationName")


def keyword_paths(ds: Dataset, prefix: str = "") -> set[str]:
    """Every attribute as a path of keywords (sequence items merged), for shape comparisons."""
    paths = set()
    for elem in ds:
        if elem.tag.group in (0x0002,) or elem.tag.element == 0:  # file meta, group lengths
            continue
        path = f"{prefix}{elem.keyword}"
        paths.add(path)
        if elem.VR == "SQ":
            for item in elem.value:
                paths |= keyword_paths(item, path + ">")
    return paths


def test_real_cached_worklist_item_is_read_with_its_three_inputs():
    item = msg.parse_workitem(pydicom.dcmread(TDW / "Cache" / "TDW-RO-58-C-FIND-Rsp.dcm", force=True))
    assert item.ups_uid == "1.2.840.113854.19.4.123456789.633812604900000001.4"
    assert (item.priority, item.label, item.input_readiness) == ("MEDIUM", "DELIVER", "READY")
    assert item.station_code == STATION
    assert item.workitem_code.value == "121726"
    assert item.delivery_type == "TREATMENT"  # placeholder concept "ccc001" with the right meaning
    assert len(item.inputs) == 3
    assert (item.plan.sop_instance_uid, item.plan.retrieve_ae) == (
        "1.2.840.114358.420.20100605152044.2",
        "OST",
    )
    bdi = item.delivery_instruction
    assert (bdi.sop_instance_uid, bdi.retrieve_ae) == ("1.2.246.352.310.634115071837020103.10", "IHETESTTOOL")
    assert bdi.study_uid == "1.2.840.4027.3.20100520.114447"
    assert msg.eligible(item, "TDD", codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION)
    assert not msg.eligible(item, "OTHER", codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION)
    assert not msg.eligible(item, "TDD", codes.WORKITEM_RT_BRACHY_TREATMENT)


def test_worklist_item_without_plan_names_the_attribute():
    item = msg.parse_workitem(pydicom.dcmread(TDW / "UPSMessages" / "TDW-RO-58-C-FIND-Rsp.dcm", force=True))
    assert item.delivery_type == "TREATMENT"
    with pytest.raises(
        msg.WorkitemError, match=r"Input Information Sequence \(0040,4021\) references no RT Plan"
    ):
        _ = item.plan


def test_worklist_query_has_the_matching_keys_of_the_ihe_ro_request():
    query = msg.worklist_query("LINAC1", codes.WORKITEM_RT_BRACHY_TREATMENT, date(2026, 3, 2))
    sample = pydicom.dcmread(TDW / "UPSMessages" / "TDW-RO-58-C-FIND-Req.dcm", force=True)
    missing = {
        "ScheduledProcedureStepStartDateTime",
        "ProcedureStepState",
        "ScheduledWorkitemCodeSequence",
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "InputInformationSequence",
        "ScheduledStationNameCodeSequence",
        "ScheduledProcedureStepPriority",
        "ProcedureStepLabel",
        "ScheduledProcessingParametersSequence",
    } - set(query.dir())
    assert not missing
    assert set(sample.dir()) - set(query.dir()) <= {
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
    }
    assert query.ProcedureStepState == "SCHEDULED"
    assert query.ScheduledProcedureStepStartDateTime == "20260302000000-20260302235959"
    assert query.ScheduledStationNameCodeSequence[0].CodeValue == "LINAC1"
    assert query.ScheduledWorkitemCodeSequence[0].CodeValue == "121735"  # the workitem code is a parameter
    assert "TransactionUID" not in query


def test_items_sort_by_priority_then_start_time():
    def item(uid, priority, start):
        return msg.Workitem(uid, "", priority, start, "READY", None, None, "", (), "", "")

    items = [
        item("1", "LOW", "20260302080000"),
        item("2", "HIGH", "20260302100000"),
        item("3", "MEDIUM", "20260302070000"),
        item("4", "HIGH", "20260302090000"),
        item("5", "", ""),
    ]
    assert [i.ups_uid for i in sorted(items, key=msg.Workitem.sort_key)] == ["4", "2", "3", "1", "5"]


def test_state_changes_match_ro60_and_ro65_samples():
    for state, name in (
        ("IN PROGRESS", "TDW-RO-60-N-ACTION-RQ.dcm"),
        ("COMPLETED", "TDW-RO-65-N-ACTION-RQ.dcm"),
    ):
        sample = pydicom.dcmread(TDW / "UPSMessages" / name, force=True)
        ds = msg.state_change(state, "1.2.3")
        assert keyword_paths(ds) == keyword_paths(sample) == {"TransactionUID", "ProcedureStepState"}
        assert ds.ProcedureStepState == sample.ProcedureStepState


def test_progress_update_has_the_ro62_shape_plus_the_progress_value():
    sample = pydicom.dcmread(TDW / "UPSMessages" / "TDW-RO-62-N-SET-RQ.dcm", force=True)
    ds = msg.progress_update("1.2.3", 37.25, beam_number=2, description="beam 2 (2 of 3)")
    paths = keyword_paths(ds)
    # the sample's performed workitem code is an empty placeholder; everything else is there
    expected = keyword_paths(sample) - {
        p for p in keyword_paths(sample) if "PerformedWorkitemCodeSequence" in p
    }
    assert expected <= paths
    assert "SOPClassUID" not in ds
    assert "ProcedureStepState" not in ds
    progress = ds.ProcedureStepProgressInformationSequence[0]
    assert float(progress.ProcedureStepProgress) == pytest.approx(37.2, abs=0.051)
    performed = ds.UnifiedProcedureStepPerformedProcedureSequence[0]
    assert performed.OutputInformationSequence == []  # RO-62: SHALL be empty
    param = performed.PerformedProcessingParametersSequence[0]
    assert (param.ValueType, param.TextValue) == ("TEXT", "2")
    assert (
        param.ConceptNameCodeSequence[0].CodeValue == codes.CONCEPT_REFERENCED_BEAM_NUMBER_IN_PROGRESS.value
    )
    assert (
        float(msg.progress_update("1", 140).ProcedureStepProgressInformationSequence[0].ProcedureStepProgress)
        == 100
    )


def test_final_update_completed_has_the_ro64_shape_and_no_state():
    sample = pydicom.dcmread(TDW / "UPSMessages" / "TDW-RO-64-N-SET-RQ.dcm", force=True)
    output = msg.OutputReference("1.2.840.10008.5.1.4.1.1.481.4", "9.8.7", "1.1", "1.2", "OST")
    ds = msg.final_update(
        "1.2.3",
        progress_percent=100,
        station_code=STATION,
        workitem_code=codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION,
        performed_start="20260302090000",
        performed_end="20260302091500",
        output=output,
    )
    for keyword in ("SOPClassUID", "SOPInstanceUID", "ProcedureStepState"):
        assert keyword not in ds
    assert keyword_paths(sample) <= keyword_paths(ds)
    performed = ds.UnifiedProcedureStepPerformedProcedureSequence[0]
    assert performed.PerformedStationNameCodeSequence[0].CodeValue == "TDD"
    out = performed.OutputInformationSequence[0]
    assert out.TypeOfInstances == "DICOM"
    assert out.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == "9.8.7"
    assert out.DICOMRetrievalSequence[0].RetrieveAETitle == "OST"
    assert float(ds.ProcedureStepProgressInformationSequence[0].ProcedureStepProgress) == 100


def test_final_update_canceled_without_radiation_carries_only_the_cancellation():
    cancel = msg.Cancellation(
        datetime(2026, 3, 2, 9, 5),
        "plan refused: gantry 181° → 179° too fast",
        msg.REASON_RESOURCE_INADEQUATE,
    )
    ds = msg.final_update(
        "1.2.3",
        progress_percent=0,
        station_code=STATION,
        workitem_code=None,
        performed_start="",
        performed_end="",
        output=None,
        cancellation=cancel,
        radiation_delivered=False,
    )
    assert keyword_paths(ds) == {
        "SpecificCharacterSet",
        "TransactionUID",
        "ProcedureStepProgressInformationSequence",
        "ProcedureStepProgressInformationSequence>ProcedureStepProgress",
        "ProcedureStepProgressInformationSequence>ProcedureStepCancellationDateTime",
        "ProcedureStepProgressInformationSequence>ReasonForCancellation",
        "ProcedureStepProgressInformationSequence>ProcedureStepDiscontinuationReasonCodeSequence",
        "ProcedureStepProgressInformationSequence>ProcedureStepDiscontinuationReasonCodeSequence>CodeValue",
        "ProcedureStepProgressInformationSequence>ProcedureStepDiscontinuationReasonCodeSequence>CodingSchemeDesignator",
        "ProcedureStepProgressInformationSequence>ProcedureStepDiscontinuationReasonCodeSequence>CodeMeaning",
    }
    progress = ds.ProcedureStepProgressInformationSequence[0]
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert progress.ReasonForCancellation == "plan refused: gantry 181° ? 179° too fast"  # Latin-1 only
    assert progress.ProcedureStepCancellationDateTime == "20260302090500"
    assert progress.ProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue == "110527"


def test_cancel_request_event_information_is_read():
    info = Dataset()
    info.RequestingAE = "TMSUI "
    info.ReasonForCancellation = "patient unwell"
    info.ProcedureStepDiscontinuationReasonCodeSequence = [msg.code_item(Code("110515", "DCM", "x"))]
    cancel = msg.parse_cancel_request("1.2", info)
    assert (cancel.requesting_ae, cancel.reason_text, cancel.reason_code.value) == (
        "TMSUI",
        "patient unwell",
        "110515",
    )
    assert msg.parse_cancel_request("1.2", None).reason_code is None


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_a_received_worklist_item_reads_the_same_from_its_bytes(implicit):
    """As C-FIND delivers it (raw elements, sequences still encoded), with Latin-1 text, the item reads
    the same as from the Dataset it was encoded from."""
    from io import BytesIO

    from pydicom.dataelem import RawDataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(TDW / "Cache" / "TDW-RO-58-C-FIND-Rsp.dcm", force=True)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.ScheduledStationNameCodeSequence[0].CodeMeaning = "Gerät 1 (Bestrahlungsraum Süd)"
    ds.ScheduledProcessingParametersSequence[0].TextValue = "TREATMENT"
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(fp, ds)
    received = read_dataset(BytesIO(fp.getvalue()), implicit, True)
    assert isinstance(received.get_item(0x00404025), RawDataElement)  # the sequence is still encoded

    item = msg.parse_workitem(received)
    assert item == msg.parse_workitem(ds)
    assert item.patient_name == "Müller^Jürgen"
    assert item.station_code == Code("TDD", "TMS", "Gerät 1 (Bestrahlungsraum Süd)")
    assert len(item.inputs) == 3
    assert item.delivery_type == "TREATMENT"
