"""RT Plan reader: inheritance, MU per control point, techniques, lenient reading, and clear errors."""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian
from rtsim_testdata import IHE_RO_DIR

from simulators.errors import PlanReadError, PlanRefusedError, RtsimError
from simulators.plans.dicom_reader import (
    ION_PLAN_REFUSAL,
    attribute_name,
    plan_kind,
    read_dataset_file,
    read_plan_dataset,
    read_plan_file,
    segment_rotation_deg,
)
from simulators.plans.model import BeamTechnique

ARTI = IHE_RO_DIR / "ARTI" / "Datasets" / "RTAdvanced"
TPPC = IHE_RO_DIR / "TPPC" / "Datasets" / "TPPC"
SLIDING_WINDOW = ARTI / "SlidingWindowBeam" / "RTPlanSlidingWindowBeam.dcm"
ION_PLAN = next((IHE_RO_DIR / "TDW-II" / "Datasets" / "TDW" / "UPSDataIonPlan").glob("RTPLAN_*.dcm"), None)


def _dataset(path: Path) -> Dataset:
    return pydicom.dcmread(path, force=True)


@pytest.fixture(scope="module")
def rtplan_ds(rtplan_path: Path) -> Dataset:
    return _dataset(rtplan_path)


@pytest.fixture(scope="module")
def static_mlc_ds() -> Dataset:
    return _dataset(ARTI / "BasicStaticMLCBeam" / "RTPlanBasicStaticMLCBeam.dcm")


@pytest.fixture(scope="module")
def sliding_window_ds() -> Dataset:
    return _dataset(SLIDING_WINDOW)


# ------------------------------------------------------------------------------------------------
# worked examples on real plans


def test_pydicom_example_plan(rtplan_path: Path) -> None:
    plan = read_plan_file(rtplan_path)
    assert plan.identity.label == "Plan1"
    assert plan.identity.approval_status == "UNAPPROVED"
    assert plan.identity.source == str(rtplan_path)
    assert plan.identity.patient.patient_id == "id00001"
    assert plan.patient_position == "HFS"
    assert [g.fractions_planned for g in plan.fraction_groups] == [30]
    (beam,) = plan.beams
    assert (beam.number, beam.name, beam.treatment_machine_name) == (1, "Field 1", "unit001")
    assert beam.technique is BeamTechnique.STATIC
    assert beam.radiation_type == "PHOTON"
    assert beam.nominal_energy_mev == 6.0
    assert beam.fluence_mode_id is None
    assert beam.source_axis_distance_mm == 1000.0
    np.testing.assert_allclose(beam.cumulative_meterset_mu, [0.0, 116.0036697])
    np.testing.assert_allclose(beam.dose_rate_set_mu_per_min, [650.0, 650.0])  # given at CP 0 only
    assert beam.jaw_x_device_type == "X"  # symmetric device: still two positions
    np.testing.assert_allclose(beam.jaw_x_mm, [[-100.0, 100.0], [-100.0, 100.0]])
    assert beam.mlc_mm is None
    assert beam.wedge_in.shape == (2, 0)
    assert np.isnan(beam.table_top_vertical_mm).all()  # present but empty: unknown


def test_sliding_window_inherits_gantry_and_jaws_given_only_at_cp0(sliding_window_ds: Dataset) -> None:
    plan = read_plan_dataset(sliding_window_ds, "sw.dcm")
    beam = plan.beam(1)
    raw = sliding_window_ds.BeamSequence[0].ControlPointSequence
    assert "GantryAngle" in raw[0]
    assert not any("GantryAngle" in cp for cp in raw[1:])
    assert beam.control_point_count == 161
    assert beam.technique is BeamTechnique.SLIDING_WINDOW
    np.testing.assert_array_equal(beam.gantry_deg, np.zeros(161))
    assert beam.gantry_direction == ("NONE",) * 161
    # CP 50 gives only the MLC: the jaws come from CP 0 (ASYMX -63/70, ASYMY -38/68).
    assert [d.RTBeamLimitingDeviceType for d in raw[50].BeamLimitingDevicePositionSequence] == ["MLCX"]
    np.testing.assert_array_equal(beam.jaw_x_mm[50], [-63.0, 70.0])
    np.testing.assert_array_equal(beam.jaw_y_mm[50], [-38.0, 68.0])
    # Bank A = the first 60 values, bank B = the last 60.
    leaves = [float(v) for v in raw[50].BeamLimitingDevicePositionSequence[0].LeafJawPositions]
    assert beam.mlc_mm.shape == (161, 2, 60)
    np.testing.assert_array_equal(beam.mlc_mm[50, 0], leaves[:60])
    np.testing.assert_array_equal(beam.mlc_mm[50, 1], leaves[60:])
    assert beam.mlc_mm[50, 0, 28] == -45.2
    assert beam.mlc_mm[50, 1, 28] == -6.4
    assert beam.mlc_leaf_boundaries_mm[:3] == (-200.0, -190.0, -180.0)
    assert beam.device_pair_counts == {"ASYMX": 1, "ASYMY": 1, "MLCX": 60}
    # Beam 2 moves its X jaws with the leaves (jaw tracking): every CP carries its own value.
    assert plan.beam(2).jaw_x_mm[0].tolist() == [-78.0, -17.0]
    assert plan.beam(2).jaw_x_mm[-1].tolist() != [-78.0, -17.0]


def test_mu_per_control_point_step_and_shoot_by_hand() -> None:
    """Beam 1: 148 MU in 17 equal segments; CMW 0, 1/17, 1/17, 2/17, ... (beam held between pairs)."""
    plan = read_plan_file(ARTI / "StepAndShootBeam" / "RTPlanStepShootBeam.dcm")
    beam = plan.beam(1)
    assert beam.technique is BeamTechnique.STEP_AND_SHOOT
    assert beam.beam_meterset_mu == 148.0
    assert beam.final_cumulative_meterset_weight == 1.0
    one_segment_mu = 148.0 / 17  # 8.70588 MU
    np.testing.assert_allclose(beam.cumulative_meterset_mu[:5], np.array([0, 1, 1, 2, 2]) * one_segment_mu)
    assert beam.cumulative_meterset_mu[-1] == pytest.approx(148.0)


def test_mu_per_control_point_vmat_and_rotation_direction() -> None:
    plan = read_plan_file(ARTI / "IMATVMATBeam" / "RTPlanIMATVMATBeam.dcm")
    beam = plan.beam(1)
    assert beam.technique is BeamTechnique.VMAT
    # Beam Meterset 146.351067481452 MU, CMW(CP1) = 6.162165e-3, Final CMW "1.0e0": 0.901840 MU.
    assert beam.cumulative_meterset_mu[1] == pytest.approx(0.9018398, rel=1e-6)
    assert beam.gantry_deg[:2].tolist() == [0.0, 359.53125]
    assert beam.gantry_direction[0] == "CC"
    assert beam.gantry_direction[-1] == "NONE"


def test_techniques_of_the_ihe_ro_plans() -> None:
    expected = {
        ARTI / "ArcBeam" / "RTPlanArcBeam.dcm": BeamTechnique.ARC,
        ARTI / "MLCArcBeam" / "RTPlanMLCArcBeam.dcm": BeamTechnique.CONFORMAL_ARC,  # fixed MLC
        ARTI / "ConformalArcBeam" / "RTPlanConformalArcBeam.dcm": BeamTechnique.CONFORMAL_ARC,  # MLC moves
        ARTI / "IMATVMATBeam" / "RTPlanIMATVMATBeam.dcm": BeamTechnique.VMAT,
        ARTI / "BasicStaticBeam" / "RTPlanBasicStaticBeam.dcm": BeamTechnique.STATIC,
        ARTI / "MotorizedWedgeBeam" / "RTPlanMotorizedWedgeBeam.dcm": BeamTechnique.STATIC,  # 4 CPs
    }
    for path, technique in expected.items():
        assert {b.technique for b in read_plan_file(path).beams} == {technique}, path.name


def test_conformal_arc_has_constant_mu_per_degree_vmat_does_not() -> None:
    conformal = read_plan_file(ARTI / "ConformalArcBeam" / "RTPlanConformalArcBeam.dcm").beam(2)
    rotation = np.abs(np.diff(conformal.gantry_deg))
    mu_per_deg = np.diff(conformal.cumulative_meterset_mu) / rotation
    np.testing.assert_allclose(mu_per_deg, 200.0 / 90.0)  # 200 MU over the 90 deg arc 0 -> 90 CW
    assert np.ptp(conformal.mlc_mm, axis=0).max() > 1.0  # the MLC does move


def test_arc_rotation_follows_the_direction() -> None:
    plan = read_plan_file(ARTI / "ArcBeam" / "RTPlanArcBeam.dcm")
    ccw, cw = plan.beam(1), plan.beam(2)
    assert ccw.gantry_deg.tolist() == [0.0, 270.0]
    assert ccw.gantry_direction == ("CC", "NONE")
    assert segment_rotation_deg(0.0, 270.0, "CC") == -90.0  # "CCW 0-270" is a 90 deg arc
    assert cw.gantry_deg.tolist() == [0.0, 90.0]
    assert cw.gantry_direction == ("CW", "NONE")
    assert segment_rotation_deg(0.0, 90.0, "CW") == 90.0


@pytest.mark.parametrize(
    ("start", "end", "direction", "expected"),
    [
        (5, 5, "CW", 360.0),
        (170, 160, "CC", -10.0),
        (160, 170, "CC", -350.0),
        (350, 10, "CW", 20.0),
        (1, 2, "NONE", 0),
    ],
)
def test_segment_rotation(start: float, end: float, direction: str, expected: float) -> None:
    assert segment_rotation_deg(start, end, direction) == pytest.approx(expected)


def test_wedges_in_and_out_per_control_point() -> None:
    plan = read_plan_file(TPPC / "MotorizedWedgeBeam" / "RTPlanMotorizedWedgeBeam.dcm")
    beam = plan.beam(1)
    assert [(w.number, w.wedge_id, w.wedge_type, w.angle_deg) for w in beam.wedges] == [
        (1, "MW", "MOTORIZED", 60.0),
        (2, "W45RT20U", "STANDARD", 45.0),
    ]
    np.testing.assert_allclose(beam.cumulative_meterset_weight, [0, 0.65, 0.65, 1])
    assert beam.wedge_in.tolist() == [[True, True], [True, True], [False, True], [False, True]]
    hard = read_plan_file(ARTI / "HardWedgeBeam" / "RTPlanHardWedgeBeam.dcm").beam(1)
    assert hard.wedges[0].orientation_deg == 90.0
    assert hard.wedge_in.tolist() == [[True], [True]]  # given at CP 0 only: carried forward


def test_electron_applicator_and_energy() -> None:
    beam = read_plan_file(ARTI / "StaticElectronBeam" / "RTPlanElectronBeamStaticElectronBeam.dcm").beam(1)
    assert (beam.radiation_type, beam.nominal_energy_mev) == ("ELECTRON", 12.0)
    assert (beam.applicator_id, beam.applicator_type) == ("A10", "ELECTRON_SQUARE")
    assert (beam.number_of_blocks, beam.number_of_compensators, beam.number_of_boli) == (1, 1, 1)


def test_fluence_mode_fff(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    mode = Dataset()
    mode.FluenceMode = "NON_STANDARD"
    mode.FluenceModeID = "FFF"
    ds.BeamSequence[0].PrimaryFluenceModeSequence = Sequence([mode])
    assert read_plan_dataset(ds, "fff.dcm").beam(1).fluence_mode_id == "FFF"
    mode.FluenceMode = "STANDARD"
    assert read_plan_dataset(ds, "std.dcm").beam(1).fluence_mode_id is None


def test_beam_without_meterset_gets_zero_and_is_flagged(rtplan_ds: Dataset, caplog) -> None:
    """A fraction group may reference only some beams (setup beams have no meterset)."""
    ds = copy.deepcopy(rtplan_ds)
    setup = copy.deepcopy(ds.BeamSequence[0])
    setup.BeamNumber = 2
    setup.BeamName = "SETUP AP"
    setup.TreatmentDeliveryType = "SETUP"
    ds.BeamSequence.append(setup)
    with caplog.at_level(logging.WARNING):
        plan = read_plan_dataset(ds, "setup.dcm")
    assert plan.beam(1).beam_meterset_mu == pytest.approx(116.0036697)
    beam = plan.beam(2)
    assert beam.beam_meterset_mu == 0.0
    assert beam.cumulative_meterset_mu.tolist() == [0.0, 0.0]
    assert beam.treatment_delivery_type == "SETUP"
    assert "beam 2 'SETUP AP'" in caplog.text
    assert "no Beam Meterset" in caplog.text


# ------------------------------------------------------------------------------------------------
# lenient reading


def test_plan_without_file_meta_or_preamble(tmp_path: Path, rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    del ds.file_meta
    ds.preamble = None
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    assert read_plan_file(path).beam(1).beam_meterset_mu == pytest.approx(116.0036697)


def test_over_long_ds_values_are_read_silently(tmp_path: Path, rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    long_value = "116.003669700000001"  # 19 characters: DS allows 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset = long_value
        path = tmp_path / "long.dcm"
        ds.save_as(path)
    before = pydicom_config.settings.reading_validation_mode
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader must not even warn
        plan = read_plan_file(path)
    assert plan.beam(1).beam_meterset_mu == pytest.approx(116.0036697)
    assert pydicom_config.settings.reading_validation_mode == before


# ------------------------------------------------------------------------------------------------
# files that are not readable plans


def test_truncated_plan_names_file_beam_and_attribute() -> None:
    path = get_testdata_file("rtplan_truncated.dcm")
    with pytest.raises(PlanReadError) as err:
        read_plan_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}, beam 1 'Field 1': ")
    assert "Number of Control Points (300A,0110)" in message
    assert "truncated" in message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(PlanReadError, match=r"empty\.dcm: the file is empty"):
        read_plan_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanReadError, match="no such file"):
        read_plan_file(tmp_path / "nope.dcm")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_bytes_are_an_error_message_not_a_traceback(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"noise{seed}.dcm"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(PlanReadError) as err:
        read_plan_file(path)
    assert str(err.value).startswith(str(path))


def test_cut_file_is_an_error(tmp_path: Path, rtplan_path: Path) -> None:
    data = Path(rtplan_path).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(PlanReadError, match=r"cut\.dcm"):
        read_plan_file(path)


def test_ct_image_is_not_an_rt_plan() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert plan_kind(pydicom.dcmread(path)) == "unknown"
    with pytest.raises(PlanReadError, match=r"not an RT Plan with beams: SOP Class UID is CT Image Storage"):
        read_plan_file(path)


@pytest.mark.skipif(ION_PLAN is None, reason="TDW-II ion plan not in the test data")
def test_rt_ion_plan_is_identified_and_refused() -> None:
    assert plan_kind(_dataset(ION_PLAN)) == "ion"
    with pytest.raises(PlanRefusedError) as err:
        read_plan_file(ION_PLAN)
    assert err.value.exit_code == 3
    assert err.value.reasons == [f"{ION_PLAN}: {ION_PLAN_REFUSAL}"]
    assert "RT Ion Plan: this machine delivers photon and electron beams only" in str(err.value)


def _brachy_plan() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    ds.BrachyTreatmentType = "HDR"
    ds.BrachyTreatmentTechnique = "INTRACAVITARY"
    setup = Dataset()
    setup.ApplicationSetupNumber = 1
    ds.ApplicationSetupSequence = Sequence([setup])
    return ds


def test_plan_kinds(rtplan_ds: Dataset) -> None:
    assert plan_kind(rtplan_ds) == "linac"
    assert plan_kind(_brachy_plan()) == "brachy"
    assert plan_kind(Dataset()) == "unknown"
    with pytest.raises(PlanRefusedError, match="brachytherapy"):
        read_plan_dataset(_brachy_plan(), "brachy.dcm")


# ------------------------------------------------------------------------------------------------
# control points that break the rules: file, beam number + name, control point, attribute


def _assert_read_error(ds: Dataset, *fragments: str) -> None:
    with pytest.raises(PlanReadError) as err:
        read_plan_dataset(ds, "bad.dcm")
    message = str(err.value)
    assert message.startswith("bad.dcm"), message
    for fragment in fragments:
        assert fragment in message, message


def test_decreasing_cmw() -> None:
    ds = _dataset(ARTI / "StepAndShootBeam" / "RTPlanStepShootBeam.dcm")
    cps = ds.BeamSequence[2].ControlPointSequence
    cps[7].CumulativeMetersetWeight = "0.0001"
    _assert_read_error(
        ds, "beam 3 'Field 3', control point 7", "Cumulative Meterset Weight (300A,0134)", "decreases"
    )


def test_missing_gantry_angle_at_cp0(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    del ds.BeamSequence[0].ControlPointSequence[0].GantryAngle
    _assert_read_error(ds, "beam 1 'Field 1', control point 0", "Gantry Angle (300A,011E)", "missing")


def test_missing_jaw_positions_at_cp0(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    del ds.BeamSequence[0].ControlPointSequence[0].BeamLimitingDevicePositionSequence[1]
    _assert_read_error(ds, "control point 0", "Leaf/Jaw Positions (300A,011C)", "no positions for Y")


def test_wrong_number_of_leaf_positions(static_mlc_ds: Dataset) -> None:
    ds = copy.deepcopy(static_mlc_ds)
    mlc = ds.BeamSequence[1].ControlPointSequence[0].BeamLimitingDevicePositionSequence[2]
    assert mlc.RTBeamLimitingDeviceType == "MLCX"
    mlc.LeafJawPositions = list(mlc.LeafJawPositions)[:119]
    _assert_read_error(
        ds,
        "beam 2 'Field 2', control point 0",
        "Leaf/Jaw Positions (300A,011C)",
        "needs 120 values",
        "found 119",
    )


def test_gantry_moving_without_direction(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    ds.BeamSequence[0].ControlPointSequence[1].GantryAngle = "30"
    _assert_read_error(ds, "control point 0", "Gantry Rotation Direction (300A,011F)", "NONE")


def test_same_angle_written_as_360_is_no_rotation(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    ds.BeamSequence[0].ControlPointSequence[1].GantryAngle = "360"
    beam = read_plan_dataset(ds, "360.dcm").beam(1)
    assert beam.gantry_deg.tolist() == [0.0, 360.0]
    assert beam.technique is BeamTechnique.STATIC


def test_energy_change_within_a_beam(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    ds.BeamSequence[0].ControlPointSequence[1].NominalBeamEnergy = "10"
    _assert_read_error(ds, "control point 1", "Nominal Beam Energy (300A,0114)")


def test_undeclared_device_and_unknown_wedge(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    ds.BeamSequence[0].ControlPointSequence[0].BeamLimitingDevicePositionSequence[
        0
    ].RTBeamLimitingDeviceType = "MLCY"
    _assert_read_error(ds, "control point 0", "RT Beam Limiting Device Type (300A,00B8)", "MLCY")
    ds = copy.deepcopy(rtplan_ds)
    position = Dataset()
    position.ReferencedWedgeNumber = 4
    position.WedgePosition = "IN"
    ds.BeamSequence[0].ControlPointSequence[1].WedgePositionSequence = Sequence([position])
    _assert_read_error(ds, "control point 1", "Referenced Wedge Number (300C,00C0)", "wedge 4")


def test_last_cmw_must_reach_final_cmw(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    ds.BeamSequence[0].ControlPointSequence[1].CumulativeMetersetWeight = "0.5"
    _assert_read_error(ds, "control point 1", "differs from Final Cumulative Meterset Weight")


def test_fraction_group_referencing_a_missing_beam(rtplan_ds: Dataset) -> None:
    ds = copy.deepcopy(rtplan_ds)
    ds.FractionGroupSequence[0].ReferencedBeamSequence[0].ReferencedBeamNumber = 9
    _assert_read_error(ds, "Referenced Beam Number (300C,0006)", "beam 9")


def test_not_a_number_in_the_file(tmp_path: Path, rtplan_path: Path) -> None:
    data = Path(rtplan_path).read_bytes()
    assert data.count(b"650.000000000000") == 1  # the Dose Rate Set of CP 0
    path = tmp_path / "garbage.dcm"
    path.write_bytes(data.replace(b"650.000000000000", b"fast            "))
    with pytest.raises(PlanReadError) as err:
        read_plan_file(path)
    assert str(err.value) == (
        f"{path}, beam 1 'Field 1', control point 0: Dose Rate Set (300A,0115): not a number: 'fast'"
    )


def test_garbage_numbers_name_their_attribute_or_are_ignored(rtplan_ds: Dataset) -> None:
    """A non-number in a DS of CP 0 is either unused (ignored) or an error naming it; never a traceback."""
    cps = rtplan_ds.BeamSequence[0].ControlPointSequence[0]
    raised: dict[str, str] = {}
    for keyword in [e.keyword for e in cps if e.VR == "DS"]:
        ds = copy.deepcopy(rtplan_ds)
        cp = ds.BeamSequence[0].ControlPointSequence[0]
        tag = cp[keyword].tag
        cp[tag] = RawDataElement(tag, "DS", 1, b"x", 0, True, True)  # as read from a broken file
        try:
            read_plan_dataset(ds, "fuzz.dcm")
        except RtsimError as exc:
            raised[keyword] = str(exc)
    used = {"NominalBeamEnergy", "DoseRateSet", "GantryAngle", "BeamLimitingDeviceAngle"}
    used |= {"PatientSupportAngle", "CumulativeMetersetWeight"}
    assert used <= raised.keys()
    for keyword, message in raised.items():
        expected = f"fuzz.dcm, beam 1 'Field 1', control point 0: {attribute_name(keyword)}"
        assert message.startswith(expected), message


def test_attribute_name() -> None:
    assert attribute_name("GantryAngle") == "Gantry Angle (300A,011E)"
    assert attribute_name("NotAKeyword") == "NotAKeyword"


def test_read_dataset_file_for_callers_that_send_it_on(tmp_path: Path, rtplan_path: Path) -> None:
    ds = read_dataset_file(rtplan_path)
    assert ds.RTPlanLabel == "Plan1"
    assert read_plan_dataset(ds, str(rtplan_path)).beam(1).name == "Field 1"
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(PlanReadError, match="empty"):
        read_dataset_file(empty)


@pytest.mark.parametrize("plan", ["SlidingWindowBeam", "IMATVMATBeam"])  # defined and undefined lengths
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_damaged_real_plans_are_a_message_or_a_plan_never_a_traceback(
    tmp_path: Path, plan: str, seed: int
) -> None:
    """Cut and scribbled-over copies of real plans (the fast reader's path and pydicom's fallback)."""
    data = bytearray((ARTI / plan / f"RTPlan{plan}.dcm").read_bytes())
    rng = np.random.default_rng(seed)
    for case in range(8):
        damaged = bytearray(data)
        if case % 2:
            damaged = damaged[: int(rng.integers(200, len(data) - 1))]
        else:
            for offset in rng.integers(132, len(data), 6):
                damaged[int(offset)] = int(rng.integers(0, 256))
        path = tmp_path / f"damaged{case}.dcm"
        path.write_bytes(bytes(damaged))
        message = str(path)  # delivered as a plan: fine too
        try:
            read_plan_file(path)
        except (PlanReadError, PlanRefusedError) as err:
            message = str(err)
        assert message.startswith(str(path)), message


@pytest.mark.parametrize(
    ("positions", "problem"),
    [
        (lambda values: values[:119], "needs 120 values (60 pairs), found 119"),
        (lambda values: [*values[:-1], "1e999"], "not a finite number"),
        (lambda values: [*values[:-1], "wide"], "not numbers"),
    ],
    ids=["count", "infinite", "text"],
)
def test_bad_leaf_positions_at_a_later_control_point_are_named(
    tmp_path: Path, sliding_window_ds: Dataset, positions, problem: str
) -> None:
    """Through the fast path (a Part 10 file, control points parsed from their bytes)."""
    ds = copy.deepcopy(sliding_window_ds)
    (mlc,) = [
        item
        for item in ds.BeamSequence[2].ControlPointSequence[7].BeamLimitingDevicePositionSequence
        if item.RTBeamLimitingDeviceType == "MLCX"
    ]
    encoded = "\\".join(positions([str(v) for v in mlc.LeafJawPositions])).encode()
    encoded += b" " * (len(encoded) % 2)
    mlc[0x300A011C] = RawDataElement(Tag(0x300A011C), "DS", len(encoded), encoded, 0, False, True)
    path = tmp_path / "bad.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(PlanReadError) as err:
        read_plan_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}, beam 3 'Field 3', control point 7: Leaf/Jaw Positions (300A,011C)"), (
        message
    )
    assert problem in message
