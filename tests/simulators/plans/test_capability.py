"""Capability check: each refusal reason on a mutated copy of a real plan, against a hand-built linac.

The machine here is built from the schema by hand (a TrueBeam-like linac with a Millennium 120 MLC) so
that every limit is known to the test; ``test_ihe_ro_plans.py`` runs the bundled models.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from rtsim_testdata import IHE_RO_DIR

from machine_models.schema import (
    AxisLimits,
    DeviceKind,
    DoseRateServo,
    Energy,
    JawModel,
    LinacModel,
    MachineModel,
    MlcModel,
    Wedge,
)
from simulators.errors import PlanRefusedError
from simulators.plans.capability import check_plan, require_deliverable
from simulators.plans.dicom_reader import read_plan_dataset
from simulators.plans.model import LinacPlan

ARTI = IHE_RO_DIR / "ARTI" / "Datasets" / "RTAdvanced"
TPPC = IHE_RO_DIR / "TPPC" / "Datasets" / "TPPC"

MILLENNIUM120_MM = tuple(
    [-200.0 + 10 * i for i in range(10)]
    + [-100.0 + 5 * i for i in range(40)]
    + [100.0 + 10 * i for i in range(11)]
)
HD120_MM = tuple(
    [-110.0 + 5 * i for i in range(14)]
    + [-40.0 + 2.5 * i for i in range(32)]
    + [40.0 + 5 * i for i in range(15)]
)


def _axis(name: str, low: float, high: float, unit: str = "deg", circular: bool = True) -> AxisLimits:
    return AxisLimits(name, unit, low, high, 6.0, None, circular)


def make_machine(**linac_changes: object) -> MachineModel:
    mlc = MlcModel(
        device_type="MLCX",
        leaf_pair_count=60,
        leaf_boundaries_mm=MILLENNIUM120_MM,
        min_position_mm=-200.0,
        max_position_mm=200.0,
        max_leaf_spread_mm=150.0,
        min_leaf_gap_mm=0.5,
        interdigitation=True,
        max_leaf_speed_mm_per_s=25.0,
    )
    linac = LinacModel(
        gantry=_axis("gantry", 0.0, 360.0),
        collimator=_axis("collimator", 0.0, 360.0),
        couch_rotation=_axis("couch rotation", -95.0, 95.0),
        couch_vertical=_axis("couch vertical", -1000.0, 1000.0, "mm", False),
        couch_longitudinal=_axis("couch longitudinal", -2000.0, 2000.0, "mm", False),
        couch_lateral=_axis("couch lateral", -500.0, 500.0, "mm", False),
        jaws=(
            JawModel(("X", "ASYMX"), -200.0, 200.0, 20.0, 25.0),
            JawModel(("Y", "ASYMY"), -200.0, 200.0, 100.0, 25.0),
        ),
        mlc=mlc,
        energies=(
            Energy("6X", "PHOTON", 6.0, None, 600.0),
            Energy("10X", "PHOTON", 10.0, None, 600.0),
            Energy("6FFF", "PHOTON", 6.0, "FFF", 1400.0),
            Energy("6E", "ELECTRON", 6.0, None, 1000.0),
            Energy("12E", "ELECTRON", 12.0, None, 1000.0),
        ),
        dose_rate_servo=DoseRateServo.CONTINUOUS,
        wedges=(Wedge("W60", "STANDARD", 60.0), Wedge("EDW20", "DYNAMIC", 20.0)),
        electron_applicators=("A10", "A15"),
    )
    linac = dataclasses.replace(linac, **linac_changes)
    return MachineModel(
        1, "test-linac", DeviceKind.LINAC, "Test", "Linac", "IHE_V120", "hand-built", None, linac
    )


def with_mlc(**changes: object) -> MachineModel:
    machine = make_machine()
    return make_machine(mlc=dataclasses.replace(machine.linac.mlc, **changes))


_CACHE: dict[Path, Dataset] = {}


def dataset(path: Path) -> Dataset:
    """A private copy of a real plan to mutate (files are read once per session)."""
    if path not in _CACHE:
        _CACHE[path] = pydicom.dcmread(path, force=True)
    return copy.deepcopy(_CACHE[path])


STATIC_MLC = ARTI / "BasicStaticMLCBeam" / "RTPlanBasicStaticMLCBeam.dcm"


def plan_of(ds: Dataset) -> LinacPlan:
    return read_plan_dataset(ds, "plan.dcm")


def refusals(ds: Dataset, machine: MachineModel | None = None, **kwargs: object) -> list[str]:
    kwargs.setdefault("require_approved", False)
    return check_plan(plan_of(ds), machine or make_machine(), **kwargs)


def only(reasons: list[str], *fragments: str) -> str:
    """The single reason, after checking it contains every fragment."""
    assert len(reasons) == 1, reasons
    for fragment in fragments:
        assert fragment in reasons[0], reasons[0]
    return reasons[0]


def mlc_positions(ds: Dataset, beam_index: int = 0, cp: int = 0) -> Dataset:
    items = ds.BeamSequence[beam_index].ControlPointSequence[cp].BeamLimitingDevicePositionSequence
    return next(item for item in items if item.RTBeamLimitingDeviceType == "MLCX")


def jaw_positions(ds: Dataset, device: str, beam_index: int = 0, cp: int = 0) -> Dataset:
    items = ds.BeamSequence[beam_index].ControlPointSequence[cp].BeamLimitingDevicePositionSequence
    return next(item for item in items if item.RTBeamLimitingDeviceType == device)


# ------------------------------------------------------------------------------------------------


def test_real_static_mlc_plan_is_deliverable_with_closed_pairs_at_zero_gap() -> None:
    ds = dataset(STATIC_MLC)
    beam = plan_of(ds).beam(1)
    gaps = beam.mlc_mm[:, 1, :] - beam.mlc_mm[:, 0, :]
    assert (gaps == 0).sum() > 0  # closed pairs written at 0 mm, as planning systems do
    assert refusals(ds) == []


def test_machine_name_says_what_the_plan_asks_for_and_how_to_answer_to_it() -> None:
    machine = dataclasses.replace(make_machine(), treatment_machine_name="TrueBeam1")
    reasons = refusals(dataset(STATIC_MLC), machine)
    assert len(reasons) == 2  # one per beam
    assert reasons[0] == (
        "beam 1 'Field 1': Treatment Machine Name (300A,00B2) is 'IHE_V120' but this machine (test-linac)"
        " answers to 'TrueBeam1'; if this machine should deliver it, run with --machine-name IHE_V120"
    )
    assert refusals(dataset(STATIC_MLC), machine, answers_to="IHE_V120") == []


def test_approval_required() -> None:
    ds = dataset(STATIC_MLC)
    only(
        refusals(ds, require_approved=True),
        "RT Plan '02StaticMLC': Approval Status (300E,0002) is UNAPPROVED",
        "APPROVED plans only",
    )
    ds.ApprovalStatus = "APPROVED"
    assert refusals(ds, require_approved=True) == []
    del ds.ApprovalStatus
    only(refusals(ds, require_approved=True), "Approval Status (300E,0002) is absent")


def test_energy_not_installed() -> None:
    ds = dataset(STATIC_MLC)
    ds.BeamSequence[0].ControlPointSequence[0].NominalBeamEnergy = "18"
    only(
        refusals(ds),
        "beam 1 'Field 1': Nominal Beam Energy (300A,0114)",
        "PHOTON 18 MV is not installed on this machine (installed: 6X, 10X, 6FFF, 6E, 12E)",
    )


def test_fluence_mode_must_be_installed() -> None:
    ds = dataset(STATIC_MLC)
    mode = Dataset()
    mode.FluenceMode = "NON_STANDARD"
    mode.FluenceModeID = "FFF"
    ds.BeamSequence[0].PrimaryFluenceModeSequence = Sequence([mode])
    assert refusals(ds) == []  # 6FFF is installed
    ds.BeamSequence[0].ControlPointSequence[0].NominalBeamEnergy = "10"
    only(refusals(ds), "PHOTON 10 MV FFF is not installed")


def test_radiation_type_not_delivered() -> None:
    ds = dataset(STATIC_MLC)
    ds.BeamSequence[1].RadiationType = "NEUTRON"
    only(
        refusals(ds),
        "beam 2 'Field 2': Radiation Type (300A,00C6) is NEUTRON;",
        "this machine delivers ELECTRON and PHOTON beams only",
    )


def test_dose_rate_above_the_energy_maximum() -> None:
    ds = dataset(STATIC_MLC)
    ds.BeamSequence[0].ControlPointSequence[0].DoseRateSet = "700"
    only(
        refusals(ds),
        "beam 1 'Field 1', control point 0 (and 1 more): Dose Rate Set (300A,0115) 700 MU/min is above the"
        " maximum 600 MU/min of 6X",
    )


def test_leaf_count_not_this_mlc() -> None:
    machine = with_mlc(leaf_pair_count=80, leaf_boundaries_mm=tuple(-200.0 + 5 * i for i in range(81)))
    reasons = refusals(dataset(STATIC_MLC), machine)
    assert len(reasons) == 2
    only(reasons[:1], "beam 1 'Field 1': Number of Leaf/Jaw Pairs (300A,00BC) for MLCX is 60", "has 80 pairs")


def test_leaf_boundaries_not_this_mlc() -> None:
    reasons = refusals(dataset(STATIC_MLC), with_mlc(leaf_boundaries_mm=HD120_MM))
    only(
        reasons[:1],
        "beam 1 'Field 1': Leaf Position Boundaries (300A,00BE) (60 pairs, -200..200 mm, widths 5/10 mm)",
        "do not match this machine's MLC (60 pairs, -110..110 mm, widths 2.5/5 mm)",
    )


def test_mlc_in_plan_but_not_on_machine() -> None:
    reasons = refusals(dataset(STATIC_MLC), make_machine(mlc=None))
    only(reasons[1:], "beam 2 'Field 2': RT Beam Limiting Device Type (300A,00B8) MLCX", "has no MLC")


def test_jaw_beyond_travel_and_overtravel_and_crossing() -> None:
    ds = dataset(STATIC_MLC)
    jaw_positions(ds, "ASYMY").LeafJawPositions = ["-210", "50"]
    only(
        refusals(ds),
        "beam 1 'Field 1', control point 0 (and 1 more): Leaf/Jaw Positions (300A,011C) for ASYMY:"
        " Y1 at -210 mm is beyond its travel limit -200 mm",
    )
    ds = dataset(STATIC_MLC)
    jaw_positions(ds, "ASYMX").LeafJawPositions = ["25", "50"]
    only(refusals(ds), "ASYMX: X1 at 25 mm crosses the central axis by more than the 20 mm over-travel")
    ds = dataset(STATIC_MLC)
    jaw_positions(ds, "ASYMX").LeafJawPositions = ["10", "5"]
    only(refusals(ds), "ASYMX: X1 at 10 mm is past X2 at 5 mm (jaws overlap)")


def test_jaw_type_the_machine_does_not_have() -> None:
    machine = make_machine(jaws=(JawModel(("X",), -200, 200, 0, 25), JawModel(("Y",), -200, 200, 0, 25)))
    reasons = refusals(dataset(STATIC_MLC), machine)
    assert (
        "RT Beam Limiting Device Type (300A,00B8) ASYMX: this machine has no such jaws (it has X, Y)"
        in reasons[0]
    )


def test_leaf_outside_travel() -> None:
    ds = dataset(STATIC_MLC)
    leaves = [float(v) for v in mlc_positions(ds).LeafJawPositions]
    leaves[0] = -205.0
    mlc_positions(ds).LeafJawPositions = leaves
    only(
        refusals(ds, with_mlc(max_leaf_spread_mm=300.0)),
        "beam 1 'Field 1', control point 0 (and 1 more): Leaf/Jaw Positions (300A,011C) for MLCX:",
        "leaf A1 at -205 mm is outside the leaf travel -200..200 mm",
    )


def test_leaf_spread_beyond_max() -> None:
    ds = dataset(STATIC_MLC)
    leaves = [float(v) for v in mlc_positions(ds).LeafJawPositions]
    spread_a = max(leaves[:60]) - min(leaves[:60])
    assert spread_a == pytest.approx(72.6, abs=0.05)  # bank A as planned
    only(
        refusals(ds, with_mlc(max_leaf_spread_mm=72.0)),  # beam 2 spreads 71.4 mm at most
        "beam 1 'Field 1', control point 0 (and 1 more): Leaf/Jaw Positions (300A,011C) for MLCX:",
        "bank A spreads 72.6 mm, more than the maximum leaf spread 72 mm",
    )
    assert refusals(ds, with_mlc(max_leaf_spread_mm=72.7)) == []


def test_leaf_gap_below_minimum_but_closed_pairs_accepted() -> None:
    ds = dataset(STATIC_MLC)
    leaves = [float(v) for v in mlc_positions(ds).LeafJawPositions]
    assert (leaves[29], leaves[89]) == (-54.27, 68.6)  # pair 30 as planned: open
    leaves[29], leaves[89] = -0.2, 0.1  # 0.3 mm open
    mlc_positions(ds).LeafJawPositions = leaves
    only(
        refusals(ds),
        "beam 1 'Field 1', control point 0 (and 1 more): Leaf/Jaw Positions (300A,011C) for MLCX:",
        "leaf pair 30 gap 0.30 mm is below the minimum leaf gap 0.5 mm",
    )
    leaves[29], leaves[89] = -0.25, 0.25  # exactly the minimum gap
    mlc_positions(ds).LeafJawPositions = leaves
    assert refusals(ds) == []


def test_overlapping_leaves() -> None:
    ds = dataset(STATIC_MLC)
    leaves = [float(v) for v in mlc_positions(ds).LeafJawPositions]
    leaves[29], leaves[89] = 1.0, -1.0
    mlc_positions(ds).LeafJawPositions = leaves
    only(refusals(ds), "leaf pair 30 overlaps (A 1 mm is past B -1 mm)")


def test_interdigitation_where_not_allowed() -> None:
    ds = dataset(STATIC_MLC)  # beam 2 interdigitates by 1.6 mm, beam 1 not at all
    only(
        refusals(ds, with_mlc(interdigitation=False)),
        "beam 2 'Field 2', control point 0 (and 1 more): Leaf/Jaw Positions (300A,011C) for MLCX: leaf pairs",
        "interdigitate, which this MLC does not allow",
    )


def test_wedge_the_machine_does_not_have() -> None:
    ds = dataset(ARTI / "HardWedgeBeam" / "RTPlanHardWedgeBeam.dcm")
    assert refusals(ds) == []  # W60R15 = a STANDARD 60 deg wedge, which the machine has
    reasons = refusals(ds, make_machine(wedges=(Wedge("W45", "STANDARD", 45.0),)))
    only(
        reasons[:1],
        "beam 1 'Field 1': Wedge Sequence (300A,00D1) wedge 1 'W60R15' (STANDARD, 60 deg) is not available on"
        " this machine (available: STANDARD 45 deg)",
    )


def test_two_wedges_in_at_once() -> None:
    reasons = refusals(dataset(TPPC / "VirtualWedgeBeam" / "RTPlanVirtualWedgeBeam.dcm"))
    assert len(reasons) == 2
    only(
        reasons[:1],
        "beam 1 'Field 1', control point 0 (and 1 more): Wedge Position (300A,0118): 2 wedges IN at once"
        " (1 'EDW20IN' DYNAMIC, 2 'W60R15' STANDARD); this machine uses one wedge at a time",
    )


def test_electron_applicators() -> None:
    path = ARTI / "StaticElectronBeam" / "RTPlanElectronBeamStaticElectronBeam.dcm"
    assert refusals(dataset(path)) == []
    only(
        refusals(dataset(path), make_machine(electron_applicators=("A15", "A20"))),
        "beam 1 'Field 1': Applicator ID (300A,0108) 'A10' is not an electron applicator of this machine"
        " (available: A15, A20)",
    )
    ds = dataset(path)
    del ds.BeamSequence[0].ApplicatorSequence
    only(refusals(ds), "ELECTRON beam without an applicator")


def test_photon_cones_come_from_extra() -> None:
    ds = dataset(ARTI / "StereotacticBeam" / "RTPlanStereotacticBeam.dcm")
    reasons = refusals(ds)
    assert len(reasons) == 6
    assert reasons[0] == (
        "beam 1 'Field 1': Applicator ID (300A,0108) '20mm Cone' (STEREOTACTIC) is not a photon applicator of"
        " this machine (available: none)"
    )
    machine = dataclasses.replace(make_machine(), extra={"photon_applicators": ["20mm Cone", "10mm Cone"]})
    assert refusals(ds, machine) == []  # couch 340 and 305 deg are -20 and -55 deg: inside +-95


def test_couch_angle_outside_range() -> None:
    ds = dataset(STATIC_MLC)
    ds.BeamSequence[0].ControlPointSequence[0].PatientSupportAngle = "120"
    only(
        refusals(ds),
        "beam 1 'Field 1', control point 0 (and 1 more): Patient Support Angle (300A,0122) 120 deg is outside"
        " the couch rotation range -95..95 deg",
    )


def test_primary_dosimeter_unit_and_sad() -> None:
    ds = dataset(STATIC_MLC)
    ds.BeamSequence[0].PrimaryDosimeterUnit = "MINUTE"
    ds.BeamSequence[1].SourceAxisDistance = "800"
    reasons = refusals(ds)
    assert reasons == [
        "beam 1 'Field 1': Primary Dosimeter Unit (300A,00B3) is MINUTE; this machine meters in MU only",
        "beam 2 'Field 2': Source-Axis Distance (300A,00B4) is 800 mm; this machine's is 1000 mm",
    ]
    machine = dataclasses.replace(make_machine(), extra={"source_axis_distance_mm": 800})
    assert any("Source-Axis Distance" in r and "Field 1" in r for r in refusals(ds, machine))


def test_beam_without_meterset_and_setup_beams() -> None:
    ds = dataset(STATIC_MLC)
    del ds.FractionGroupSequence[0].ReferencedBeamSequence[1]
    only(refusals(ds), "beam 2 'Field 2': no Beam Meterset (300A,0086) for this beam in any fraction group")
    ds.BeamSequence[1].TreatmentDeliveryType = "SETUP"
    assert refusals(ds) == []


def test_machine_that_is_not_a_linac() -> None:
    machine = MachineModel(1, "hdr", DeviceKind.AFTERLOADER, "X", "Y", "HDR1", "", None)
    only(refusals(dataset(STATIC_MLC), machine), "machine model hdr is a afterloader, not a linac")


def test_every_reason_is_listed_and_require_deliverable_raises_them() -> None:
    ds = dataset(STATIC_MLC)
    ds.BeamSequence[0].ControlPointSequence[0].DoseRateSet = "700"
    ds.BeamSequence[1].ControlPointSequence[0].NominalBeamEnergy = "18"
    machine = dataclasses.replace(make_machine(), treatment_machine_name="Other")
    plan = plan_of(ds)
    reasons = check_plan(plan, machine)
    assert len(reasons) == 5  # approval, 2 x name, dose rate, energy
    with pytest.raises(PlanRefusedError) as err:
        require_deliverable(plan, machine)
    assert err.value.reasons == reasons
    assert err.value.exit_code == 3
    for reason in reasons[1:]:
        assert re.match(
            r"beam [12] 'Field [12]'(, control point \d+( \(and \d+ more\))?)?: .+ \([0-9A-F]{4},", reason
        )
    require_deliverable(plan_of(dataset(STATIC_MLC)), make_machine(), require_approved=False)  # no raise


def test_spread_is_checked_per_control_point_on_a_sliding_window() -> None:
    path = ARTI / "StepAndShootBeam" / "RTPlanStepShootBeam.dcm"
    plan = plan_of(dataset(path))
    spread = np.ptp(plan.beam(2).mlc_mm, axis=2)  # (CPs, banks)
    assert spread.max() == pytest.approx(144.0, abs=0.05)
    assert spread[24, 1] == pytest.approx(141.9, abs=0.05)  # the first CP above 141 mm
    reasons = check_plan(plan, with_mlc(max_leaf_spread_mm=141.0), require_approved=False)
    assert [r.split(",")[0] for r in reasons] == ["beam 2 'Field 2'", "beam 4 'Field 4'"]
    assert "control point 24 (and 13 more)" in reasons[0]
