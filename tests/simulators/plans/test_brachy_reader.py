"""Brachy RT Plan reader: sample plans, a hand-written sloppy plan, and every read error."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RTPlanStorage

from simulators.errors import PlanReadError, PlanRefusedError
from simulators.plans.brachy_reader import read_brachy_plan_dataset
from simulators.plans.dicom_reader import read_dataset_file
from simulators.plans.samples.brachy import SAMPLE_BRACHY_PLANS, sample_brachy_plan
from simulators.plans.samples.linac import sample_linac_plan


def _sloppy_plan_file(tmp_path: Path) -> Path:
    """A plan as real exports are: DS over 16 characters, no file meta, optional attributes left out."""
    ds = Dataset()
    ds.SOPClassUID = RTPlanStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.777"
    ds.PatientID = "SLOPPY"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.778"
    ds.BrachyTreatmentTechnique = "intracavitary"
    ds.BrachyTreatmentType = "HDR"
    src = Dataset()
    src.SourceNumber = "1"
    src.SourceIsotopeName = "Ir-192"
    src.SourceIsotopeHalfLife = "73.829999999999998"  # 18 characters
    src.ReferenceAirKermaRate = "40800.000000000001"
    src.SourceStrengthReferenceDate = "20250106"  # no time
    ds.SourceSequence = Sequence([src])
    channel = Dataset()
    channel.ChannelNumber = "3"
    channel.ChannelTotalTime = "200.00000000000003"  # no Channel Length, no Number of Control Points
    cps = []
    for index, (position, weight) in enumerate([(30, 0), (30, 25), (20, 25), (20, 50), (10, 50), (10, 100)]):
        cp = Dataset()
        cp.ControlPointIndex = str(index)
        cp.ControlPointRelativePosition = f"{position}.000000000000001"
        cp.CumulativeTimeWeight = f"{weight}.0000000000000001"
        cps.append(cp)
    channel.BrachyControlPointSequence = Sequence(cps)  # no Final CTW, no Referenced Source Number
    setup = Dataset()
    setup.ApplicationSetupNumber = "1"
    setup.ChannelSequence = Sequence([channel])
    ds.ApplicationSetupSequence = Sequence([setup])
    path = tmp_path / "sloppy.dcm"
    previous = pydicom_config.settings.writing_validation_mode
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        ds.save_as(path, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    finally:
        pydicom_config.settings.writing_validation_mode = previous
    return path


def test_sloppy_hand_written_plan_is_read(tmp_path: Path) -> None:
    path = _sloppy_plan_file(tmp_path)
    plan = read_brachy_plan_dataset(read_dataset_file(path), str(path))
    assert plan.technique == "INTRACAVITARY"
    assert plan.treatment_type == "HDR"
    source = plan.source(1)
    assert source.half_life_days == pytest.approx(73.83)
    assert source.strength_reference_datetime == datetime(2025, 1, 6)
    channel = plan.channel(3)
    assert channel.length_mm is None
    assert channel.source_number == 1  # the only source
    assert channel.final_cumulative_time_weight == pytest.approx(100.0)
    assert channel.positions_3d_mm is None
    # dwell time = total x weight difference / final weight: 200 x 25/100, 200 x 25/100, 200 x 50/100
    dwells = channel.dwells()
    assert [d.position_mm for d in dwells] == pytest.approx([30.0, 20.0, 10.0])
    assert [d.time_s for d in dwells] == pytest.approx([50.0, 50.0, 100.0])
    assert [(d.start_row, d.end_row) for d in dwells] == [(0, 1), (2, 3), (4, 5)]
    assert plan.fraction_groups[0].setup_numbers == (1,)


@pytest.mark.parametrize("name", SAMPLE_BRACHY_PLANS)
def test_sample_plans_read_back(name: str) -> None:
    ds = sample_brachy_plan(name)
    plan = read_brachy_plan_dataset(ds, name)
    assert plan.identity.approval_status == "APPROVED"
    for channel in plan.channels:
        total = sum(d.time_s for d in channel.dwells())
        assert total == pytest.approx(channel.total_time_s, abs=1e-3)
        assert channel.length_mm == 1200.0
        assert channel.positions_3d_mm is not None
        assert np.all(np.diff(channel.relative_positions_mm) <= 0)  # stepping back from the tip
    if name.startswith("pdr"):
        assert plan.treatment_type == "PDR"
        assert plan.pulses == 24
        assert plan.pulse_repetition_interval_s == 3600.0
    else:
        assert plan.pulses == 1


def test_prostate_sample_has_sixteen_needles() -> None:
    plan = read_brachy_plan_dataset(sample_brachy_plan("hdr-prostate"), "p")
    assert [c.number for c in plan.channels] == list(range(1, 17))
    assert plan.technique == "INTERSTITIAL"


def test_linac_plan_is_refused() -> None:
    with pytest.raises(PlanRefusedError, match="afterloader"):
        read_brachy_plan_dataset(sample_linac_plan("static-mlc"), "linac.dcm")


def _broken(edit) -> Dataset:
    ds = copy.deepcopy(sample_brachy_plan("hdr-cervix"))
    edit(ds)
    return ds


def _channel(ds: Dataset, index: int = 0) -> Dataset:
    return ds.ApplicationSetupSequence[0].ChannelSequence[index]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda ds: delattr(ds, "ApplicationSetupSequence"), "Application Setup Sequence (300A,0230)"),
        (lambda ds: delattr(ds, "SourceSequence"), "Source Sequence (300A,0210)"),
        (
            lambda ds: setattr(_channel(ds).BrachyControlPointSequence[3], "CumulativeTimeWeight", "1"),
            "application setup 1, channel 1, control point 3: Cumulative Time Weight (300A,02D6): 1 is below",
        ),
        (
            lambda ds: setattr(_channel(ds), "NumberOfControlPoints", 7),
            "channel 1: Number of Control Points (300A,0110): says 7",
        ),
        (
            lambda ds: setattr(_channel(ds), "ReferencedSourceNumber", 9),
            "channel 1: Referenced Source Number (300C,000E): source 9 is not in the Source Sequence",
        ),
        (
            lambda ds: delattr(_channel(ds), "ChannelTotalTime"),
            "channel 1: Channel Total Time (300A,0286): missing",
        ),
        (
            lambda ds: setattr(_channel(ds, 1), "ChannelNumber", 1),
            "application setup 1: Channel Number (300A,0282): channel number 1 is used twice",
        ),
        (
            lambda ds: setattr(_channel(ds), "FinalCumulativeTimeWeight", "999"),
            "channel 1: Final Cumulative Time Weight (300A,02C8): 999",
        ),
        (
            lambda ds: setattr(_channel(ds).BrachyControlPointSequence[0], "CumulativeTimeWeight", "2"),
            "control point 0: Cumulative Time Weight (300A,02D6): the first control point's weight must be 0",
        ),
        (
            lambda ds: setattr(_channel(ds).BrachyControlPointSequence[2], "ControlPointIndex", 5),
            "control point 2: Control Point Index (300A,0112): is 5, expected 2",
        ),
        (
            lambda ds: delattr(_channel(ds).BrachyControlPointSequence[2], "ControlPointRelativePosition"),
            "control point 2: Control Point Relative Position (300A,02D2): missing",
        ),
    ],
)
def test_read_errors_name_setup_channel_control_point_and_attribute(edit, expected: str) -> None:
    with pytest.raises(PlanReadError) as info:
        read_brachy_plan_dataset(_broken(edit), "plan.dcm")
    assert expected in str(info.value)
    assert str(info.value).startswith("plan.dcm")


def test_plan_without_file_meta_round_trips_through_a_file(tmp_path: Path) -> None:
    ds = sample_brachy_plan("hdr-cylinder")
    path = tmp_path / "cyl.dcm"
    ds.save_as(path, enforce_file_format=True)
    again = pydicom.dcmread(path)
    again.file_meta = FileMetaDataset()
    again.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    plan = read_brachy_plan_dataset(again, str(path))
    assert plan.channel(1).total_time_s == pytest.approx(114.5)
