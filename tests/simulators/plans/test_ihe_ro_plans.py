"""Every IHE-RO RT Plan (and pydicom's rtplan.dcm): read, then delivered or refused for a stated reason.

The verdicts below are for the bundled ``truebeam-millennium120`` answering to ``IHE_V120`` (the name the
ARTI/TPPC photon plans ask for) with approval not required (all 28 ARTI/TPPC plans are UNAPPROVED).
Each refusal is one a physicist would give at the console; the comment says why. What the data contain
(checked before writing this): IHE_V120 plans use Millennium 120 boundaries (none uses HD120), the
Eclipse plans close leaf pairs at 0 mm and open none below 0.5 mm, leaf spread reaches 148.1 mm (VMAT),
both electron plans are for IHE_V120 (12 MeV A10 and 6 MeV A15), only the two MotorizedWedge plans are for
IHE_E160 (80-leaf Agility-like MLC).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from rtsim_testdata import IHE_RO_DIR

from machine_models import MachineModel, load_model
from simulators.errors import PlanRefusedError
from simulators.plans.capability import check_plan
from simulators.plans.dicom_reader import ION_PLAN_REFUSAL, read_plan_dataset, read_plan_file
from simulators.plans.model import LinacPlan

ARTI = "ARTI/Datasets/RTAdvanced"
TPPC = "TPPC/Datasets/TPPC"
RTPLAN_DCM = "pydicom:rtplan.dcm"

NAME_E160 = "Treatment Machine Name (300A,00B2) is 'IHE_E160' but this machine"
LEAVES_80 = "Number of Leaf/Jaw Pairs (300A,00BC) for MLCX is 80 but this machine's MLC has 60 pairs"
MOTORIZED = "wedge 1 'MW' (MOTORIZED, 60 deg) is not available on this machine"
TWO_WEDGES = "Wedge Position (300A,0118): 2 wedges IN at once"
CONE = "Applicator ID (300A,0108) '20mm Cone'"

# plan (path below shared/data/ihe-ro) -> (fragment, number of reasons with it); () = deliverable
EXPECTED: dict[str, tuple[tuple[str, int], ...]] = {
    f"{ARTI}/ArcBeam/RTPlanArcBeam.dcm": (),
    f"{ARTI}/BasicStaticBeam/RTPlanBasicStaticBeam.dcm": (),  # blocks/compensator/bolus: not machine axes
    f"{ARTI}/BasicStaticMLCBeam/RTPlanBasicStaticMLCBeam.dcm": (),
    f"{ARTI}/ConformalArcBeam/RTPlanConformalArcBeam.dcm": (),
    f"{ARTI}/HardWedgeBeam/RTPlanHardWedgeBeam.dcm": (),  # W60R15 = a STANDARD 60 deg wedge: installed
    f"{ARTI}/IMATVMATBeam/RTPlanIMATVMATBeam.dcm": (),  # leaf spread 148.1 mm < 150 mm
    f"{ARTI}/MLCArcBeam/RTPlanMLCArcBeam.dcm": (),
    # Planned for the Agility machine: another machine, another MLC (80 pairs), a motorized wedge.
    f"{ARTI}/MotorizedWedgeBeam/RTPlanMotorizedWedgeBeam.dcm": (
        (NAME_E160, 2),
        (LEAVES_80, 2),
        (MOTORIZED, 2),
    ),
    f"{ARTI}/SlidingWindowBeam/RTPlanSlidingWindowBeam.dcm": (),
    f"{ARTI}/StaticElectronBeam/RTPlanElectronBeamStaticElectronBeam.dcm": (),  # 12 MeV, applicator A10
    f"{ARTI}/StepAndShootBeam/RTPlanStepShootBeam.dcm": (),
    # The bundled TrueBeam lists no SRS cones: a cone plan needs a machine with that cone.
    f"{ARTI}/StereotacticArcBeam/RTPlanStereotacticArcBeam.dcm": ((CONE, 6),),
    f"{ARTI}/StereotacticBeam/RTPlanStereotacticBeam.dcm": ((CONE, 6),),
    f"{ARTI}/VirtualWedgeBeam/RTPlanVirtualWedgeBeam.dcm": (),  # really a STANDARD 60 deg wedge
    f"{TPPC}/ArcBeam/RTPlanArcBeam.dcm": (),
    f"{TPPC}/BasicStaticBeam/RTPlanBasicStaticBeam.dcm": (),
    f"{TPPC}/BasicStaticMLCBeam/RTPlanBasicStaticMLCBeam.dcm": (),
    f"{TPPC}/HardWedgeBeam/RTPlanHardWedgeBeam.dcm": (),  # W45RT20U = STANDARD 45 deg
    f"{TPPC}/IMATVMATBeam/RTPlanIMATVMATBeam.dcm": (),
    f"{TPPC}/MLCFixedApertureArcBeam/RTPlanMLCFixedApertureArcBeam.dcm": (),
    f"{TPPC}/MLCVariableApertureArcBeam/RTPlanMLCVariableApertureArcBeam.dcm": (),
    # As ARTI, plus a STANDARD wedge IN together with the motorized one.
    f"{TPPC}/MotorizedWedgeBeam/RTPlanMotorizedWedgeBeam.dcm": (
        (NAME_E160, 2),
        (LEAVES_80, 2),
        (MOTORIZED, 2),
        (TWO_WEDGES, 2),
    ),
    f"{TPPC}/PhotonApplicatorArcBeam/RTPlanPhotonApplicatorArcBeam.dcm": ((CONE, 6),),
    f"{TPPC}/PhotonApplicatorBeam/RTPlanPhotonApplicatorBeam.dcm": ((CONE, 6),),
    f"{TPPC}/SlidingWindowBeam/RTPlanSlidingWindowBeam.dcm": (),
    f"{TPPC}/StaticElectronBeam/RTPlanElectronBeamStaticElectronBeam.dcm": (),  # 6 MeV, applicator A15
    f"{TPPC}/StepAndShootBeam/RTPlanStepShootBeam.dcm": (),
    # An Enhanced Dynamic Wedge and a physical wedge IN together: no console does both at once.
    f"{TPPC}/VirtualWedgeBeam/RTPlanVirtualWedgeBeam.dcm": ((TWO_WEDGES, 2),),
    # TDW-II workflow placeholder for a CyberKnife: other machine, 800 mm SAD (and a 0 x 0 mm field).
    "TDW-II/Datasets/TDW/UPSData/RTPlan.dcm": (
        ("Treatment Machine Name (300A,00B2) is 'CDMS-LAB-CK'", 1),
        ("Source-Axis Distance (300A,00B4) is 800 mm; this machine's is 1000 mm", 1),
    ),
    # pydicom's example: machine 'unit001', and 650 MU/min is above the 600 MU/min of 6X.
    RTPLAN_DCM: (
        ("Treatment Machine Name (300A,00B2) is 'unit001'", 1),
        ("Dose Rate Set (300A,0115) 650 MU/min is above the maximum 600 MU/min of 6X", 1),
    ),
}
Plans = dict[str, LinacPlan]
ION_PLAN = "TDW-II/Datasets/TDW/UPSDataIonPlan/RTPLAN_1.2.246.352.71.5.581409048390.52.20161021091702.dcm"


def _path(key: str) -> Path:
    return Path(get_testdata_file("rtplan.dcm")) if key == RTPLAN_DCM else IHE_RO_DIR / key


@pytest.fixture(scope="module")
def plans() -> Plans:
    """Every linac plan, read once."""
    return {key: read_plan_file(_path(key)) for key in EXPECTED}


@pytest.fixture(scope="module")
def millennium() -> MachineModel:
    return load_model("truebeam-millennium120")


def test_the_table_covers_every_plan_in_the_data(ihe_ro_plans: list[Path]) -> None:
    found = {str(p.relative_to(IHE_RO_DIR)) for p in ihe_ro_plans}
    assert found == (EXPECTED.keys() - {RTPLAN_DCM}) | {ION_PLAN}
    assert len(found) == 30  # 14 ARTI + 14 TPPC + TDW-II photon + TDW-II ion


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_deliverable_or_refused_for_the_stated_reason(
    key: str, plans: Plans, millennium: MachineModel
) -> None:
    reasons = check_plan(plans[key], millennium, answers_to="IHE_V120", require_approved=False)
    expected = EXPECTED[key]
    for fragment, count in expected:
        matching = [r for r in reasons if fragment in r]
        assert len(matching) == count, (fragment, reasons)
    unexplained = [r for r in reasons if not any(fragment in r for fragment, _ in expected)]
    assert unexplained == []


def test_rt_ion_plan_is_refused_with_the_ion_message() -> None:
    with pytest.raises(PlanRefusedError) as err:
        read_plan_file(IHE_RO_DIR / ION_PLAN)
    assert err.value.reasons == [f"{IHE_RO_DIR / ION_PLAN}: {ION_PLAN_REFUSAL}"]


def test_unapproved_plans_are_refused_when_approval_is_required(
    plans: Plans, millennium: MachineModel
) -> None:
    for key, plan in plans.items():
        reasons = check_plan(plan, millennium, answers_to="IHE_V120")
        approval = [r for r in reasons if "Approval Status (300E,0002)" in r]
        expected = plan.identity.approval_status != "APPROVED"
        assert bool(approval) == expected, key
    assert sum(p.identity.approval_status == "UNAPPROVED" for p in plans.values()) == 29  # 28 + rtplan.dcm


def test_plans_ask_for_ihe_v120_not_the_models_default_name(plans: Plans, millennium: MachineModel) -> None:
    plan = plans[f"{ARTI}/ArcBeam/RTPlanArcBeam.dcm"]
    reasons = check_plan(plan, millennium, require_approved=False)
    assert [r.split(":")[0] for r in reasons] == ["beam 1 'CCW 0-270'", "beam 2 'CW 0-90'"]
    assert f"answers to '{millennium.treatment_machine_name}'" in reasons[0]
    assert "--machine-name IHE_V120" in reasons[0]


def test_motorized_wedge_plan_is_for_the_agility_machine(plans: Plans) -> None:
    agility = load_model("versahd-agility")
    arti = plans[f"{ARTI}/MotorizedWedgeBeam/RTPlanMotorizedWedgeBeam.dcm"]
    assert check_plan(arti, agility, answers_to="IHE_E160", require_approved=False) == []
    tppc = plans[f"{TPPC}/MotorizedWedgeBeam/RTPlanMotorizedWedgeBeam.dcm"]
    reasons = check_plan(tppc, agility, answers_to="IHE_E160", require_approved=False)
    assert reasons, "the extra STANDARD wedge W45RT20U is refused on the Agility machine too"
    assert all("W45RT20U" in r for r in reasons)


def test_cone_plans_deliver_on_a_truebeam_with_that_cone(plans: Plans, millennium: MachineModel) -> None:
    with_cones = dataclasses.replace(
        millennium, extra={**millennium.extra, "photon_applicators": ["20mm Cone"]}
    )
    for key in (
        f"{ARTI}/StereotacticArcBeam/RTPlanStereotacticArcBeam.dcm",
        f"{TPPC}/PhotonApplicatorBeam/RTPlanPhotonApplicatorBeam.dcm",
    ):
        assert check_plan(plans[key], with_cones, answers_to="IHE_V120", require_approved=False) == []


def test_millennium_plans_are_refused_on_hd120_and_an_hd120_plan_the_other_way_round() -> None:
    """No IHE-RO plan uses HD120 boundaries: make one from the static MLC plan (same leaf tips)."""
    hd120 = load_model("truebeam-hd120")
    millennium = load_model("truebeam-millennium120")
    path = IHE_RO_DIR / ARTI / "BasicStaticMLCBeam" / "RTPlanBasicStaticMLCBeam.dcm"
    ds = pydicom.dcmread(path, force=True)
    reasons = check_plan(
        read_plan_dataset(ds, "mil.dcm"), hd120, answers_to="IHE_V120", require_approved=False
    )
    assert len(reasons) == 2
    assert all("Leaf Position Boundaries (300A,00BE)" in r and "different MLC" in r for r in reasons)

    for beam in ds.BeamSequence:
        mlc = next(d for d in beam.BeamLimitingDeviceSequence if d.RTBeamLimitingDeviceType == "MLCX")
        mlc.LeafPositionBoundaries = [f"{b:g}" for b in hd120.linac.mlc.leaf_boundaries_mm]
    hd_plan = read_plan_dataset(ds, "hd.dcm")
    np.testing.assert_array_equal(hd_plan.beam(1).mlc_leaf_boundaries_mm, hd120.linac.mlc.leaf_boundaries_mm)
    assert check_plan(hd_plan, hd120, answers_to="IHE_V120", require_approved=False) == []
    refused = check_plan(hd_plan, millennium, answers_to="IHE_V120", require_approved=False)
    assert len(refused) == 2
    assert "(60 pairs, -110..110 mm, widths 2.5/5 mm) do not match this machine's MLC" in refused[0]
