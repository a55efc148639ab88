"""RT Beams Delivery Instruction: build from a plan, read back, read the IHE-RO sample, refuse bad ones."""

from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from rtsim_testdata import IHE_RO_DIR

from simulators.dicom import codes
from simulators.dicom.bdi import build_bdi, read_bdi, treatment_beams
from simulators.errors import PlanReadError
from simulators.plans.model import BeamTask

UPSDATA = IHE_RO_DIR / "TDW-II" / "Datasets" / "TDW" / "UPSData"


@pytest.fixture
def plan():
    return dcmread(UPSDATA / "RTPlan.dcm", force=True)


def test_reads_the_ihe_ro_sample():
    bdi = read_bdi(dcmread(UPSDATA / "RTBeamsDeliveryInstruction.dcm"))
    assert bdi.plan_sop_instance_uid == "1.2.840.114358.420.20100605152044.2"
    assert bdi.beam_tasks == (BeamTask(beam_number=1, delivery_type="TREATMENT", fraction_number=1),)
    assert bdi.omitted_beams == ()


def test_build_then_read_round_trip(plan, tmp_path):
    ds = build_bdi(plan, fraction_number=4)
    path = tmp_path / "bdi.dcm"
    ds.save_as(path, enforce_file_format=True)
    back = dcmread(path)
    assert back.SOPClassUID == codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE
    assert back.file_meta.TransferSyntaxUID is not None
    assert (back.PatientID, back.StudyInstanceUID) == (plan.PatientID, plan.StudyInstanceUID)
    assert back.Modality == "PLAN"
    item = back.BeamTaskSequence[0]
    assert (item.BeamTaskType, item.TreatmentDeliveryType, item.BeamOrderIndex) == ("TREAT", "TREATMENT", 1)
    assert "PrimaryDosimeterUnit" not in item  # 1C: only for CONTINUATION
    assert "TableTopVerticalAdjustedPosition" in item  # Type 2, present and empty
    assert read_bdi(back).beam_tasks == (BeamTask(1, fraction_number=4, fraction_group_number=1),)


def test_continuation_tasks_and_omitted_beams(plan):
    task = BeamTask(1, "CONTINUATION", 46.27914, 509.07073, fraction_number=3)
    ds = build_bdi(plan, fraction_number=3, beam_tasks=[task], omitted=[(2, codes.OMISSION_ALREADY_TREATED)])
    item = ds.BeamTaskSequence[0]
    assert item.PrimaryDosimeterUnit == "MU"
    assert (item.ContinuationStartMeterset, item.ContinuationEndMeterset) == (46.27914, 509.07073)
    read = read_bdi(ds)
    assert read.beam_tasks == (task,)
    assert read.omitted_beams == ((2, "ALREADY_TREATED"),)
    assert read.primary_dosimeter_unit == "MU"
    assert read.fraction_number == 3


def test_setup_and_zero_meterset_beams_get_no_task(plan):
    plan.BeamSequence[0].TreatmentDeliveryType = "SETUP"
    assert treatment_beams(plan) == []
    with pytest.raises(PlanReadError, match="no treatment beam"):
        build_bdi(plan, fraction_number=1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ds: delattr(ds, "ReferencedRTPlanSequence"), r"Referenced RT Plan Sequence \(300C,0002\)"),
        (lambda ds: delattr(ds.BeamTaskSequence[0], "ReferencedBeamNumber"), r"item 1: ReferencedBeamNumber"),
        (
            lambda ds: setattr(ds.BeamTaskSequence[0], "TreatmentDeliveryType", "VERIFY"),
            "Treatment Delivery Type",
        ),
        (
            lambda ds: delattr(ds.BeamTaskSequence[0], "CurrentFractionNumber"),
            r"CurrentFractionNumber \(3008,0022\)",
        ),
        (
            lambda ds: delattr(ds.BeamTaskSequence[0], "ContinuationStartMeterset"),
            "ContinuationStartMeterset",
        ),
        (lambda ds: delattr(ds.BeamTaskSequence[0], "PrimaryDosimeterUnit"), "Primary Dosimeter Unit"),
        (lambda ds: setattr(ds.BeamTaskSequence[0], "ContinuationStartMeterset", 600.0), "must be within"),
    ],
)
def test_bad_instructions_name_the_attribute(plan, mutate, message):
    ds = build_bdi(plan, fraction_number=3, beam_tasks=[BeamTask(1, "CONTINUATION", 10.0, 509.07073, 3)])
    mutate(ds)
    with pytest.raises(PlanReadError, match=message) as error:
        read_bdi(ds)
    assert str(ds.SOPInstanceUID) in str(error.value)


def test_unknown_beam_and_fraction_group_are_refused(plan):
    with pytest.raises(PlanReadError, match="beam 7"):
        build_bdi(plan, fraction_number=1, beam_tasks=[BeamTask(7)])
    with pytest.raises(PlanReadError, match="Fraction Group Number"):
        build_bdi(plan, fraction_number=1, fraction_group_number=2)
    ds = build_bdi(plan, fraction_number=1, sop_instance_uid=(uid := generate_uid()))
    assert ds.SOPInstanceUID == uid
