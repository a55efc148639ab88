"""RT Beams Treatment Record writer: attribute values, the continuation rule, dciodvfy on every record.

The fixtures build a LinacPlan by hand and a DeliveryResult with :func:`deliver`, a tiny stand-in for the
engine that follows the documented result contract (metersets cumulative for the beam *in this session*;
an interruption adds a last point at the end control point of the interrupted segment).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dciodvfy import KNOWN_FALSE_ERRORS, assert_dciodvfy_clean, dciodvfy_errors, run_dciodvfy
from pydicom.uid import RTBeamsTreatmentRecordStorage, RTPlanStorage

from machine_models.schema import DeviceKind, MachineModel
from simulators.core.results import (
    DeliveredControlPoint,
    DeliveryResult,
    TerminationStatus,
    UnitResult,
)
from simulators.errors import RtsimError
from simulators.plans.model import (
    BeamTask,
    BeamTechnique,
    FractionGroup,
    LinacBeam,
    LinacPlan,
    PatientStudy,
    PlanIdentity,
    WedgeSpec,
)
from simulators.records.beams_record import build_beams_treatment_record
from simulators.records.common import write_record
from simulators.records.decimal_strings import format_ds

SESSION_START = datetime(2026, 3, 2, 8, 30, 0)
PAIRS = 60
BOUNDARIES_MM = tuple([-200.0 + 10.0 * i for i in range(10)] + [-100.0 + 5.0 * i for i in range(40)])
BOUNDARIES_MM = BOUNDARIES_MM + tuple(100.0 + 10.0 * i for i in range(11))
PLAN_UID = "1.2.826.0.1.3680043.8.498.77001"
STUDY_UID = "1.2.826.0.1.3680043.8.498.77002"
MACHINE_NAME = "TrueBeam1"


# --- fixtures: plan -----------------------------------------------------------------------------------


def make_beam(
    number: int,
    name: str,
    *,
    cmw: Sequence[float] = (0.0, 1.0),
    meterset_mu: float = 100.0,
    gantry_deg: Sequence[float] | None = None,
    gantry_direction: str = "NONE",
    radiation_type: str = "PHOTON",
    energy_mev: float = 6.0,
    fluence_mode_id: str | None = None,
    mlc: bool = True,
    wedges: tuple[WedgeSpec, ...] = (),
    applicator: tuple[str, str] | None = None,
    jaw_x_type: str = "ASYMX",
    beam_type: str = "STATIC",
    table_top_mm: tuple[float, float, float] = (-120.0, 450.0, 3.0),
) -> LinacBeam:
    """A beam with ``len(cmw)`` control points; leaves open and shift a little at every control point."""
    n = len(cmw)
    weights = np.asarray(cmw, dtype=float)
    gantry = np.asarray(gantry_deg if gantry_deg is not None else [0.0] * n, dtype=float)
    directions = tuple([gantry_direction] * (n - 1) + ["NONE"])
    leaf_shift = np.linspace(0.0, 10.0, n)
    mlc_mm = None
    if mlc:
        bank_a = -30.0 + leaf_shift[:, None] + np.zeros((n, PAIRS))
        bank_b = 30.0 + leaf_shift[:, None] + np.zeros((n, PAIRS))
        mlc_mm = np.stack([bank_a, bank_b], axis=1)
    devices = {jaw_x_type: 1, "ASYMY": 1}
    if mlc:
        devices["MLCX"] = PAIRS
    return LinacBeam(
        number=number,
        name=name,
        description=f"{name} description",
        beam_type=beam_type,
        radiation_type=radiation_type,
        technique=BeamTechnique.STATIC if n == 2 else BeamTechnique.VMAT,
        treatment_machine_name=MACHINE_NAME,
        primary_dosimeter_unit="MU",
        source_axis_distance_mm=1000.0,
        treatment_delivery_type="TREATMENT",
        beam_meterset_mu=meterset_mu,
        final_cumulative_meterset_weight=float(weights[-1]),
        nominal_energy_mev=energy_mev,
        fluence_mode_id=fluence_mode_id,
        device_pair_counts=devices,
        mlc_device_type="MLCX" if mlc else None,
        mlc_leaf_boundaries_mm=BOUNDARIES_MM if mlc else None,
        wedges=wedges,
        applicator_id=applicator[0] if applicator else None,
        applicator_type=applicator[1] if applicator else None,
        number_of_compensators=0,
        number_of_boli=0,
        number_of_blocks=0,
        referenced_patient_setup_number=1,
        referenced_tolerance_table_number=None,
        control_point_indices=np.arange(n),
        cumulative_meterset_weight=weights,
        cumulative_meterset_mu=meterset_mu * weights / weights[-1],
        dose_rate_set_mu_per_min=np.full(n, 600.0),
        gantry_deg=gantry,
        gantry_direction=directions,
        collimator_deg=np.full(n, 10.0),
        collimator_direction=tuple(["NONE"] * n),
        couch_deg=np.zeros(n),
        couch_direction=tuple(["NONE"] * n),
        table_top_vertical_mm=np.full(n, table_top_mm[0]),
        table_top_longitudinal_mm=np.full(n, table_top_mm[1]),
        table_top_lateral_mm=np.full(n, table_top_mm[2]),
        jaw_x_mm=np.tile([-50.0, 50.0], (n, 1)),
        jaw_x_device_type=jaw_x_type,
        jaw_y_mm=np.tile([-60.0, 60.0], (n, 1)),
        jaw_y_device_type="ASYMY",
        mlc_mm=mlc_mm,
        wedge_in=np.ones((n, len(wedges)), dtype=bool),
    )


def make_plan(*beams: LinacBeam, fractions: int = 5, patient_name: str = "Test^Patient") -> LinacPlan:
    patient = PatientStudy(
        patient_name=patient_name,
        patient_id="RTSIM-T1",
        patient_birth_date="19700101",
        patient_sex="O",
        study_instance_uid=STUDY_UID,
        study_id="1",
        study_date="20260301",
        study_time="090000",
        referring_physician_name="",
        accession_number="",
        frame_of_reference_uid=None,
    )
    identity = PlanIdentity(
        sop_class_uid=RTPlanStorage,
        sop_instance_uid=PLAN_UID,
        label="TEST",
        name="test plan",
        approval_status="APPROVED",
        source="test-plan.dcm",
        patient=patient,
    )
    group = FractionGroup(
        number=1, fractions_planned=fractions, beam_metersets_mu={b.number: b.beam_meterset_mu for b in beams}
    )
    return LinacPlan(identity=identity, fraction_groups=(group,), beams=tuple(beams), patient_position="HFS")


def make_machine() -> MachineModel:
    return MachineModel(
        schema_version=1,
        model_id="varian-truebeam",
        kind=DeviceKind.LINAC,
        manufacturer="Varian Medical Systems",
        model_name="TrueBeam",
        treatment_machine_name=MACHINE_NAME,
        description="test machine",
        source_file=None,
    )


def vmat_beam(number: int = 2, meterset_mu: float = 200.0) -> LinacBeam:
    return make_beam(
        number,
        "Arc",
        cmw=(0.0, 0.2, 0.45, 0.7, 1.0),
        meterset_mu=meterset_mu,
        gantry_deg=(181.0, 270.0, 0.0, 90.0, 179.0),
        gantry_direction="CW",
        beam_type="DYNAMIC",
    )


# --- fixtures: a stand-in for the engine -----------------------------------------------------------------


def _positions(beam: LinacBeam, row: int) -> dict[str, np.ndarray]:
    out = {
        "gantry_deg": np.asarray(beam.gantry_deg[row]),
        "collimator_deg": np.asarray(beam.collimator_deg[row]),
        "couch_deg": np.asarray(beam.couch_deg[row]),
        "table_top_vertical_mm": np.asarray(beam.table_top_vertical_mm[row]),
        "table_top_longitudinal_mm": np.asarray(beam.table_top_longitudinal_mm[row]),
        "table_top_lateral_mm": np.asarray(beam.table_top_lateral_mm[row]),
    }
    for key in ("jaw_x_mm", "jaw_y_mm", "mlc_mm"):
        values = getattr(beam, key)
        if values is not None:
            out[key] = np.asarray(values[row])
    return out


def _blend(a: dict[str, np.ndarray], b: dict[str, np.ndarray], f: float) -> dict[str, np.ndarray]:
    """Linear interpolation; the gantry turns clockwise (through 360/0)."""
    out = {k: a[k] + (b[k] - a[k]) * f for k in a}
    out["gantry_deg"] = (a["gantry_deg"] + ((b["gantry_deg"] - a["gantry_deg"]) % 360.0) * f) % 360.0
    return out


def deliver(
    plan: LinacPlan,
    tasks: Sequence[BeamTask] | None = None,
    *,
    stop: tuple[int, float, TerminationStatus, str] | None = None,
    rate_mu_per_min: float = 600.0,
    noise_sd: float = 0.0,
    seed: int = 0,
) -> DeliveryResult:
    """A DeliveryResult as the engine documents it. ``stop`` = (beam, session MU, status, code)."""
    rng = np.random.default_rng(seed)
    tasks = list(tasks) if tasks else [BeamTask(b.number) for b in plan.beams]
    t = 0.0
    units = []
    stopped = False
    for task in tasks:
        beam = plan.beam(task.beam_number)
        if stopped:
            units.append(
                UnitResult(
                    beam.number,
                    beam.name,
                    "MU",
                    beam.beam_meterset_mu,
                    0.0,
                    TerminationStatus.UNKNOWN,
                    "",
                    t,
                    t,
                    0.0,
                    {},
                    (),
                    delivered=False,
                )
            )
            continue
        start = task.start_meterset_mu or 0.0
        end = task.end_meterset_mu if task.end_meterset_mu is not None else beam.beam_meterset_mu
        session = np.clip(beam.cumulative_meterset_mu, start, end) - start
        t += 5.0  # setup
        unit_start = t
        beam_on = 0.0
        cps = []
        limit = stop[1] if stop and stop[0] == beam.number else math.inf
        for row in range(beam.control_point_count):
            if row and session[row] > limit:
                frac = (limit - session[row - 1]) / (session[row] - session[row - 1])
                dt = (limit - session[row - 1]) / rate_mu_per_min * 60.0
                t += dt
                beam_on += dt
                pos = _blend(_positions(beam, row - 1), _positions(beam, row), frac)
                cps.append(
                    DeliveredControlPoint(row, t, float(session[row]), limit, 600.0, rate_mu_per_min, pos)
                )
                stopped = True
                break
            if row:
                dt = (session[row] - session[row - 1]) / rate_mu_per_min * 60.0
                t += max(dt, 0.5)
                beam_on += dt
            pos = _positions(beam, row)
            if noise_sd:
                pos = {k: v + rng.normal(0.0, noise_sd, np.shape(v)) for k, v in pos.items()}
            cps.append(
                DeliveredControlPoint(
                    row, t, float(session[row]), float(session[row]), 600.0, rate_mu_per_min, pos
                )
            )
        status, code = (stop[2], stop[3]) if stopped else (TerminationStatus.NORMAL, "")
        units.append(
            UnitResult(
                number=beam.number,
                name=beam.name,
                meterset_unit="MU",
                specified_meterset=end - start,
                delivered_meterset=cps[-1].delivered_meterset,
                termination_status=status,
                termination_code=code,
                start_time_s=unit_start - 5.0,
                end_time_s=t,
                beam_on_time_s=beam_on,
                limiting_axis_share={"dose": 0.75, "gantry": 0.25},
                control_points=tuple(cps),
            )
        )
    final = stop[2] if stopped else TerminationStatus.NORMAL
    return DeliveryResult(
        machine_id="varian-truebeam",
        device_kind="linac",
        session_start=SESSION_START,
        seed=seed,
        units=tuple(units),
        termination_status=final,
        termination_code=stop[3] if stopped else "",
        end_time_s=t,
    )


def build(plan: LinacPlan, result: DeliveryResult, **kwargs) -> pydicom.Dataset:
    kwargs.setdefault("treatment_machine_name", MACHINE_NAME)
    return build_beams_treatment_record(plan, result, make_machine(), **kwargs)


def written(ds: pydicom.Dataset, tmp_path: Path, name: str = "record.dcm") -> Path:
    path = write_record(ds, tmp_path / name)
    assert_dciodvfy_clean(path)
    return path


def floats(values) -> list[float]:
    return [float(v) for v in values]


# --- tests: a normal session ------------------------------------------------------------------------------


def test_normal_session_record_has_every_module_and_passes_dciodvfy(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "Static"), vmat_beam(2))
    result = deliver(plan)
    ds = build(plan, result, operator_name="Therapist^Anna", uid_seed=7)
    path = written(ds, tmp_path)

    back = pydicom.dcmread(path)
    assert path.read_bytes()[128:132] == b"DICM"
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPClassUID == RTBeamsTreatmentRecordStorage
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.SOPClassUID == RTBeamsTreatmentRecordStorage
    assert back.Modality == "RTRECORD"
    assert back.PatientID == "RTSIM-T1"
    assert back.StudyInstanceUID == STUDY_UID
    assert back.SeriesInstanceUID != back.SOPInstanceUID
    assert str(back.OperatorsName) == "Therapist^Anna"
    assert back.Manufacturer == "rtsim"
    assert back.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == PLAN_UID
    assert back.ReferencedRTPlanSequence[0].ReferencedSOPClassUID == RTPlanStorage
    assert "ReferencedTreatmentRecordSequence" not in back
    machine = back.TreatmentMachineSequence[0]
    assert (machine.TreatmentMachineName, machine.Manufacturer, machine.ManufacturerModelName) == (
        MACHINE_NAME,
        "Varian Medical Systems",
        "TrueBeam",
    )
    assert back.ReferencedFractionGroupNumber == 1
    assert back.NumberOfFractionsPlanned == 5
    assert back.PrimaryDosimeterUnit == "MU"
    assert back.PatientSetupSequence[0].PatientPosition == "HFS"
    # treatment date/time = the last control point of the last beam
    last = SESSION_START + timedelta(seconds=result.units[-1].control_points[-1].time_s)
    assert (back.TreatmentDate, back.TreatmentTime) == (last.strftime("%Y%m%d"), last.strftime("%H%M%S.%f"))

    beams = back.TreatmentSessionBeamSequence
    assert [b.ReferencedBeamNumber for b in beams] == [1, 2]
    arc = beams[1]
    assert (arc.BeamName, arc.BeamType, arc.RadiationType) == ("Arc", "DYNAMIC", "PHOTON")
    assert {
        (d.RTBeamLimitingDeviceType, d.NumberOfLeafJawPairs) for d in arc.BeamLimitingDeviceLeafPairsSequence
    } == {
        ("ASYMX", 1),
        ("ASYMY", 1),
        ("MLCX", 60),
    }
    assert (arc.NumberOfWedges, arc.NumberOfCompensators, arc.NumberOfBoli, arc.NumberOfBlocks) == (
        0,
        0,
        0,
        0,
    )
    assert (arc.CurrentFractionNumber, arc.TreatmentDeliveryType) == (1, "TREATMENT")
    assert (arc.TreatmentTerminationStatus, arc.TreatmentVerificationStatus) == ("NORMAL", "VERIFIED")
    assert "TreatmentTerminationCode" not in arc
    assert float(arc.SpecifiedPrimaryMeterset) == 200.0
    assert float(arc.DeliveredPrimaryMeterset) == 200.0
    assert float(arc.DeliveredTreatmentTime) == pytest.approx(20.0)
    assert arc.NumberOfControlPoints == 5 == len(arc.ControlPointDeliverySequence)
    cps = arc.ControlPointDeliverySequence
    assert [cp.ReferencedControlPointIndex for cp in cps] == [0, 1, 2, 3, 4]
    assert floats(cp.SpecifiedMeterset for cp in cps) == [0.0, 40.0, 90.0, 140.0, 200.0]
    assert floats(cp.DeliveredMeterset for cp in cps) == [0.0, 40.0, 90.0, 140.0, 200.0]
    first = cps[0]
    assert (float(first.NominalBeamEnergy), first.NominalBeamEnergyUnit) == (6.0, "MV")
    assert (float(first.GantryAngle), first.GantryRotationDirection) == (181.0, "CW")
    assert (float(first.BeamLimitingDeviceAngle), float(first.PatientSupportAngle)) == (10.0, 0.0)
    assert floats(
        [first.TableTopVerticalPosition, first.TableTopLongitudinalPosition, first.TableTopLateralPosition]
    ) == [
        -120.0,
        450.0,
        3.0,
    ]
    devices = {
        d.RTBeamLimitingDeviceType: floats(d.LeafJawPositions)
        for d in first.BeamLimitingDevicePositionSequence
    }
    assert devices["ASYMX"] == [-50.0, 50.0]
    assert devices["ASYMY"] == [-60.0, 60.0]
    assert devices["MLCX"] == [-30.0] * 60 + [30.0] * 60  # bank A then bank B
    # later items: metersets, rates and time always; unchanged values are not repeated
    second = cps[1]
    assert float(second.GantryAngle) == 270.0
    assert "NominalBeamEnergy" not in second
    assert "TableTopVerticalPosition" not in second
    assert "GantryRotationDirection" not in second  # still CW
    assert cps[4].GantryRotationDirection == "NONE"
    assert [d.RTBeamLimitingDeviceType for d in second.BeamLimitingDevicePositionSequence] == ["MLCX"]
    assert all("DoseRateSet" in cp and "DoseRateDelivered" in cp for cp in cps)
    times = [
        datetime.strptime(cp.TreatmentControlPointDate + cp.TreatmentControlPointTime, "%Y%m%d%H%M%S.%f")
        for cp in cps
    ]
    assert times == sorted(times)
    assert times[0] > SESSION_START


def test_every_decimal_string_fits_16_characters(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "Static", meterset_mu=123.456789123), vmat_beam(2, meterset_mu=1 / 3 * 100))
    ds = build(plan, deliver(plan, noise_sd=0.01, seed=3))
    long_values = []

    def check(dataset: pydicom.Dataset) -> None:
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    check(item)
            elif element.VR == "DS":
                values = element.value if element.VM > 1 else [element.value]
                long_values.extend(str(v) for v in values if v is not None and len(str(v)) > 16)

    check(ds)
    assert long_values == []
    written(ds, tmp_path)


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (46.279140000000002, 5, "46.27914"),
        (-0.0000001, 3, "0"),
        (100.0, 5, "100"),
        (1 / 3, 5, "0.33333"),
        (-12.5, 3, "-12.5"),
        (1740.0, 0, "1740"),  # whole-number rounding keeps the zeros of the integer part
    ],
)
def test_format_ds(value: float, decimals: int, text: str) -> None:
    assert format_ds(value, decimals) == text


def test_actual_positions_with_noise_are_recorded_not_the_plan(tmp_path: Path) -> None:
    plan = make_plan(vmat_beam(1))
    result = deliver(plan, noise_sd=0.2, seed=11)
    ds = build(plan, result)
    written(ds, tmp_path)
    cps = ds.TreatmentSessionBeamSequence[0].ControlPointDeliverySequence
    actual = result.units[0].control_points[2].positions
    mlc = next(d for d in cps[2].BeamLimitingDevicePositionSequence if d.RTBeamLimitingDeviceType == "MLCX")
    assert floats(mlc.LeafJawPositions) == pytest.approx(actual["mlc_mm"].reshape(-1), abs=5e-4)
    assert floats(mlc.LeafJawPositions) != pytest.approx(plan.beams[0].mlc_mm[2].reshape(-1), abs=5e-4)
    assert float(cps[2].GantryAngle) == pytest.approx(float(actual["gantry_deg"]) % 360.0, abs=5e-4)
    # noisy values change at every control point, so they are written at every one
    assert all("TableTopVerticalPosition" in cp for cp in cps)


def test_gantry_angle_noise_below_zero_wraps_to_under_360(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "Static"))
    result = deliver(plan)
    unit = result.units[0]
    cp0 = unit.control_points[0]
    moved = replace(cp0, positions={**cp0.positions, "gantry_deg": np.asarray(-0.05)})
    result = replace(result, units=(replace(unit, control_points=(moved, *unit.control_points[1:])),))
    ds = build(plan, result)
    assert float(ds.TreatmentSessionBeamSequence[0].ControlPointDeliverySequence[0].GantryAngle) == 359.95
    written(ds, tmp_path)


# --- tests: interrupted and continued -----------------------------------------------------------------


def test_interrupted_session_records_partial_meterset_and_only_administered_beams(tmp_path: Path) -> None:
    plan = make_plan(vmat_beam(1), make_beam(2, "Static"))
    result = deliver(plan, stop=(1, 65.0, TerminationStatus.MACHINE, "DOOR"))
    assert result.units[1].delivered is False
    ds = build(plan, result)
    written(ds, tmp_path)

    beams = ds.TreatmentSessionBeamSequence
    assert len(beams) == 1  # beam 2 never started: not administered in this session
    beam = beams[0]
    assert (beam.TreatmentTerminationStatus, beam.TreatmentTerminationCode) == ("MACHINE", "DOOR")
    assert float(beam.SpecifiedPrimaryMeterset) == 200.0
    assert float(beam.DeliveredPrimaryMeterset) == 65.0
    cps = beam.ControlPointDeliverySequence
    # CP 0, 1 reached (0, 40 MU); stopped inside segment 1 -> 2 at 65 MU: the last item is CP 2
    assert [cp.ReferencedControlPointIndex for cp in cps] == [0, 1, 2]
    assert floats(cp.SpecifiedMeterset for cp in cps) == [0.0, 40.0, 90.0]
    assert floats(cp.DeliveredMeterset for cp in cps) == [0.0, 40.0, 65.0]
    assert beam.NumberOfControlPoints == 3
    # the stop position lies between CP 1 and CP 2 (gantry 270 -> 360, half way at 65 MU)
    assert float(cps[2].GantryAngle) == pytest.approx(315.0)


def test_continuation_follows_the_delivered_meterset_rule_and_sums_to_the_beam_meterset(
    tmp_path: Path,
) -> None:
    plan = make_plan(vmat_beam(1))
    first = deliver(plan, [BeamTask(1, fraction_number=3)], stop=(1, 65.0, TerminationStatus.MACHINE, "DOOR"))
    first_ds = build(plan, first, beam_tasks=[BeamTask(1, fraction_number=3)], uid_seed="s1")
    written(first_ds, tmp_path, "first.dcm")

    task = BeamTask(
        1, delivery_type="CONTINUATION", start_meterset_mu=65.0, end_meterset_mu=200.0, fraction_number=3
    )
    second = deliver(plan, [task])
    ds = build(
        plan,
        second,
        beam_tasks=[task],
        referenced_record_uids=[first_ds.SOPInstanceUID],
        instance_number=2,
        uid_seed="s2",
    )
    written(ds, tmp_path, "second.dcm")

    assert ds.InstanceNumber == 2
    ref = ds.ReferencedTreatmentRecordSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (
        RTBeamsTreatmentRecordStorage,
        first_ds.SOPInstanceUID,
    )
    beam = ds.TreatmentSessionBeamSequence[0]
    assert (beam.TreatmentDeliveryType, beam.CurrentFractionNumber) == ("CONTINUATION", 3)
    assert float(beam.SpecifiedPrimaryMeterset) == 200.0  # the plan's Beam Meterset, not end - start
    assert float(beam.DeliveredPrimaryMeterset) == 135.0
    cps = beam.ControlPointDeliverySequence
    assert floats(cp.SpecifiedMeterset for cp in cps) == [0.0, 40.0, 90.0, 140.0, 200.0]
    # CPs treated earlier carry the start (65), the rest their specified meterset
    assert floats(cp.DeliveredMeterset for cp in cps) == [65.0, 65.0, 90.0, 140.0, 200.0]
    total = float(first_ds.TreatmentSessionBeamSequence[0].DeliveredPrimaryMeterset) + float(
        beam.DeliveredPrimaryMeterset
    )
    assert total == pytest.approx(200.0)


def test_interrupted_continuation_records_the_meterset_at_the_stop_in_beam_terms(tmp_path: Path) -> None:
    plan = make_plan(vmat_beam(1))
    task = BeamTask(
        1, delivery_type="CONTINUATION", start_meterset_mu=65.0, end_meterset_mu=200.0, fraction_number=3
    )
    result = deliver(plan, [task], stop=(1, 50.0, TerminationStatus.OPERATOR, ""))
    ds = build(plan, result, beam_tasks=[task])
    written(ds, tmp_path)
    beam = ds.TreatmentSessionBeamSequence[0]
    assert beam.TreatmentTerminationStatus == "OPERATOR"
    assert float(beam.DeliveredPrimaryMeterset) == 50.0
    cps = beam.ControlPointDeliverySequence
    # session MU 50 = beam MU 115: CP 2 (90) done, stopped inside 2 -> 3 (140)
    assert [cp.ReferencedControlPointIndex for cp in cps] == [0, 1, 2, 3]
    assert floats(cp.DeliveredMeterset for cp in cps) == [65.0, 65.0, 90.0, 115.0]


def test_result_in_beam_terms_instead_of_session_terms_is_refused() -> None:
    plan = make_plan(vmat_beam(1))
    task = BeamTask(1, delivery_type="CONTINUATION", start_meterset_mu=65.0, end_meterset_mu=200.0)
    result = deliver(plan, [task])
    unit = result.units[0]
    shifted = tuple(
        replace(cp, delivered_meterset=cp.delivered_meterset + 65.0) for cp in unit.control_points
    )
    bad = replace(result, units=(replace(unit, control_points=shifted),))
    with pytest.raises(
        RtsimError, match=r"test-plan.dcm: beam 1 \(Arc\): control point 3: delivered meterset 140 "
    ):
        build(plan, bad, beam_tasks=[task])


# --- tests: accessories, energies, options --------------------------------------------------------------


def test_electron_beam_with_applicator(tmp_path: Path) -> None:
    beam = make_beam(
        1,
        "Electron",
        radiation_type="ELECTRON",
        energy_mev=9.0,
        mlc=False,
        jaw_x_type="X",
        applicator=("A10", "ELECTRON_SQUARE"),
    )
    beam = replace(beam, device_pair_counts={"X": 1, "ASYMY": 1})
    plan = make_plan(beam)
    ds = build(plan, deliver(plan))
    written(ds, tmp_path)
    item = ds.TreatmentSessionBeamSequence[0]
    assert item.RadiationType == "ELECTRON"
    assert (item.ApplicatorSequence[0].ApplicatorID, item.ApplicatorSequence[0].ApplicatorType) == (
        "A10",
        "ELECTRON_SQUARE",
    )
    cp0 = item.ControlPointDeliverySequence[0]
    assert (float(cp0.NominalBeamEnergy), cp0.NominalBeamEnergyUnit) == (9.0, "MEV")


def test_wedge_beam_records_wedge_and_wedge_position(tmp_path: Path) -> None:
    wedge = WedgeSpec(
        number=1, wedge_id="W60R15", wedge_type="STANDARD", angle_deg=60.0, orientation_deg=90.0
    )
    plan = make_plan(make_beam(1, "Wedged", wedges=(wedge,), jaw_x_type="X"))
    ds = build(plan, deliver(plan))
    written(ds, tmp_path)
    item = ds.TreatmentSessionBeamSequence[0]
    assert item.NumberOfWedges == 1
    recorded = item.RecordedWedgeSequence[0]
    assert (recorded.WedgeNumber, recorded.WedgeID, float(recorded.WedgeAngle)) == (1, "W60R15", 60.0)
    position = item.ControlPointDeliverySequence[0].WedgePositionSequence[0]
    assert (position.WedgePosition, position.ReferencedWedgeNumber) == ("IN", 1)
    assert "WedgePositionSequence" not in item.ControlPointDeliverySequence[1]


def test_fff_beam_records_non_standard_fluence(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "FFF", fluence_mode_id="FFF"))
    ds = build(plan, deliver(plan))
    written(ds, tmp_path)
    fluence = ds.TreatmentSessionBeamSequence[0].PrimaryFluenceModeSequence[0]
    assert (fluence.FluenceMode, fluence.FluenceModeID) == ("NON_STANDARD", "FFF")


def test_table_top_absent_in_plan_is_written_empty_at_the_first_control_point(tmp_path: Path) -> None:
    beam = make_beam(1, "No couch", table_top_mm=(math.nan, math.nan, math.nan))
    plan = make_plan(beam)
    result = deliver(plan)
    unit = result.units[0]
    dropped = tuple(
        replace(cp, positions={k: v for k, v in cp.positions.items() if not k.startswith("table_top")})
        for cp in unit.control_points
    )
    result = replace(result, units=(replace(unit, control_points=dropped),))
    ds = build(plan, result)
    written(ds, tmp_path)
    cp0 = ds.TreatmentSessionBeamSequence[0].ControlPointDeliverySequence[0]
    assert "TableTopVerticalPosition" in cp0
    assert cp0.TableTopVerticalPosition is None


def test_non_ascii_names_get_utf8_character_set(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "Static"), patient_name="Müller^Jürgen")
    ds = build(plan, deliver(plan))
    path = written(ds, tmp_path)
    back = pydicom.dcmread(path)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Müller^Jürgen"


def test_planned_beam_on_time_from_program_is_the_specified_treatment_time(tmp_path: Path) -> None:
    from simulators.core.program import DeliveryProgram, ProgramUnit, Segment, SegmentKind

    plan = make_plan(make_beam(1, "Static"))
    unit = ProgramUnit(
        number=1,
        name="Static",
        meterset_unit="MU",
        specified_meterset=100.0,
        cp_plan_indices=np.arange(2),
        cp_meterset=np.array([0.0, 100.0]),
        cp_positions={},
        segments=(Segment(SegmentKind.BEAM, 0, 1, 10.0, 100.0, 600.0, "dose"),),
    )
    program = DeliveryProgram(machine_id="varian-truebeam", device_kind="linac", units=(unit,))
    ds = build(plan, deliver(plan), program=program)
    written(ds, tmp_path)
    assert float(ds.TreatmentSessionBeamSequence[0].SpecifiedTreatmentTime) == 10.0


def test_uids_are_reproducible_with_a_seed_and_new_without(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "Static"))
    result = deliver(plan)
    a, b = build(plan, result, uid_seed=5), build(plan, result, uid_seed=5)
    c, d = build(plan, result), build(plan, result)
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a == b
    assert len({a.SOPInstanceUID, c.SOPInstanceUID, d.SOPInstanceUID}) == 3
    assert a.SOPInstanceUID.startswith("1.2.826.0.1.3680043.8.498.")
    written(c, tmp_path)  # dicom3tools checks the UID root too


def test_seeded_uids_differ_between_sessions_and_bad_prefixes_are_refused() -> None:
    plan = make_plan(make_beam(1, "Static"))
    result = deliver(plan)
    later = replace(result, session_start=SESSION_START + timedelta(days=1))
    assert build(plan, result, uid_seed=5).SOPInstanceUID != build(plan, later, uid_seed=5).SOPInstanceUID
    for prefix in ("1.2.3", "1.02.3.", "abc.", "1." * 30):
        with pytest.raises(ValueError, match="UID prefix"):
            build(plan, result, uid_prefix=prefix)
    own = build(plan, result, uid_prefix="1.2.826.0.1.3680043.10.1234.")
    assert own.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.1234.")


def test_verification_status_not_verified_is_written_and_bad_values_refused(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "Static"))
    ds = build(plan, deliver(plan), verification_status="NOT_VERIFIED")
    written(ds, tmp_path)
    assert ds.TreatmentSessionBeamSequence[0].TreatmentVerificationStatus == "NOT_VERIFIED"
    with pytest.raises(RtsimError, match="verification status"):
        build(plan, deliver(plan), verification_status="OK")


# --- tests: errors ---------------------------------------------------------------------------------------


def test_unit_not_in_plan_is_an_error_naming_it() -> None:
    plan = make_plan(make_beam(1, "Static"))
    result = deliver(plan)
    bad = replace(result, units=(replace(result.units[0], number=9, name="Ghost"),))
    with pytest.raises(
        RtsimError, match=r"test-plan.dcm: delivered unit 9 \(Ghost\) is not a beam of the plan"
    ):
        build(plan, bad)


def test_control_point_not_in_beam_is_an_error_naming_it() -> None:
    plan = make_plan(make_beam(1, "Static"))
    result = deliver(plan)
    unit = result.units[0]
    bad_cp = replace(unit.control_points[1], plan_cp_index=7)
    bad = replace(result, units=(replace(unit, control_points=(unit.control_points[0], bad_cp)),))
    with pytest.raises(RtsimError, match=r"beam 1 \(Static\): control point 7"):
        build(plan, bad)


def test_session_without_an_administered_beam_has_no_record() -> None:
    plan = make_plan(make_beam(1, "Static"))
    result = deliver(plan)
    nothing = replace(result, units=(replace(result.units[0], delivered=False, control_points=()),))
    with pytest.raises(RtsimError, match="no beam was administered"):
        build(plan, nothing)


# --- tests: the dciodvfy helper itself ----------------------------------------------------------------


def test_dciodvfy_helper_drops_only_the_known_false_error(ihe_ro_dir: Path, tmp_path: Path) -> None:
    vendor = ihe_ro_dir / "TDW-II/Datasets/TDW/UPSData/RTRecord.dcm"
    _, lines = run_dciodvfy(vendor)
    assert any(line.strip() in KNOWN_FALSE_ERRORS for line in lines)  # the tool defect is really there
    assert dciodvfy_errors(vendor) == []
    # a real error is kept
    broken = pydicom.dcmread(vendor)
    del broken.InstanceNumber
    broken.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    errors = dciodvfy_errors(tmp_path / "broken.dcm")
    assert any("InstanceNumber" in e for e in errors)
    with pytest.raises(AssertionError, match="InstanceNumber"):
        assert_dciodvfy_clean(tmp_path / "broken.dcm")


# --- tests: real IHE-RO plans through the plan reader --------------------------------------------------

REAL_PLANS = {
    "static-mlc": "TPPC/Datasets/TPPC/BasicStaticMLCBeam/RTPlanBasicStaticMLCBeam.dcm",
    "vmat": "ARTI/Datasets/RTAdvanced/IMATVMATBeam/RTPlanIMATVMATBeam.dcm",
    "electron": "TPPC/Datasets/TPPC/StaticElectronBeam/RTPlanElectronBeamStaticElectronBeam.dcm",
    "virtual-and-hard-wedge": "TPPC/Datasets/TPPC/VirtualWedgeBeam/RTPlanVirtualWedgeBeam.dcm",
    "motorized-wedge": "TPPC/Datasets/TPPC/MotorizedWedgeBeam/RTPlanMotorizedWedgeBeam.dcm",
    "photon-applicator": "TPPC/Datasets/TPPC/PhotonApplicatorBeam/RTPlanPhotonApplicatorBeam.dcm",
}


@pytest.mark.parametrize("kind", sorted(REAL_PLANS))
def test_record_for_real_ihe_ro_plan_is_dciodvfy_clean(kind: str, ihe_ro_dir: Path, tmp_path: Path) -> None:
    reader = pytest.importorskip("simulators.plans.dicom_reader")
    path = ihe_ro_dir / REAL_PLANS[kind]
    plan = reader.read_plan_file(path)
    plan_ds = pydicom.dcmread(path, force=True)
    result = deliver(plan, noise_sd=0.05, seed=1)
    ds = build(
        plan, result, plan_dataset=plan_ds, treatment_machine_name=plan.beams[0].treatment_machine_name
    )
    back = pydicom.dcmread(written(ds, tmp_path))
    assert back.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan_ds.SOPInstanceUID
    assert back.PatientID == plan_ds.PatientID
    assert back.StudyInstanceUID == plan_ds.StudyInstanceUID
    for item, beam in zip(back.TreatmentSessionBeamSequence, plan.beams, strict=True):
        assert item.ReferencedBeamNumber == beam.number
        assert item.NumberOfControlPoints == beam.control_point_count
        assert float(item.DeliveredPrimaryMeterset) == pytest.approx(beam.beam_meterset_mu, abs=1e-5)
        assert len(item.get("RecordedBlockSequence", [])) == beam.number_of_blocks
        assert len(item.get("RecordedCompensatorSequence", [])) == beam.number_of_compensators
        assert len(item.get("ReferencedBolusSequence", [])) == beam.number_of_boli
        assert len(item.get("RecordedWedgeSequence", [])) == len(beam.wedges)


def test_accessory_identifiers_come_from_the_plan_dataset(ihe_ro_dir: Path, tmp_path: Path) -> None:
    reader = pytest.importorskip("simulators.plans.dicom_reader")
    path = ihe_ro_dir / REAL_PLANS["virtual-and-hard-wedge"]
    plan = reader.read_plan_file(path)
    ds = build(plan, deliver(plan), plan_dataset=pydicom.dcmread(path, force=True))
    written(ds, tmp_path)
    item = ds.TreatmentSessionBeamSequence[0]
    block = item.RecordedBlockSequence[0]
    assert (block.ReferencedBlockNumber, block.BlockTrayID) == (10, "User X tray")
    compensator = item.RecordedCompensatorSequence[0]
    assert (compensator.ReferencedCompensatorNumber, compensator.CompensatorID) == (1, "Compensator")
    bolus = item.ReferencedBolusSequence[0]
    assert (bolus.ReferencedROINumber, bolus.BolusID) == (33, "IHE_BOLUS")
    assert [(w.WedgeNumber, w.WedgeType, w.WedgeID) for w in item.RecordedWedgeSequence] == [
        (1, "DYNAMIC", "EDW20IN"),
        (2, "STANDARD", "W60R15"),
    ]


def test_tdw_ii_plan_record_matches_the_vendor_record_shape(ihe_ro_dir: Path, tmp_path: Path) -> None:
    """Our record of the TDW-II plan says what the IHE-RO vendor record says, where both are defined."""
    reader = pytest.importorskip("simulators.plans.dicom_reader")
    tdw = ihe_ro_dir / "TDW-II/Datasets/TDW/UPSData"
    plan = reader.read_plan_file(tdw / "RTPlan.dcm")
    vendor = pydicom.dcmread(tdw / "RTRecord.dcm")
    tasks = [BeamTask(1, fraction_number=4)]
    ds = build(plan, deliver(plan, tasks), beam_tasks=tasks, treatment_machine_name="CDMS-LAB-CK")
    written(ds, tmp_path)
    ours, theirs = ds.TreatmentSessionBeamSequence[0], vendor.TreatmentSessionBeamSequence[0]
    assert (
        ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
        == vendor.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
    )
    for keyword in ("PatientID", "StudyInstanceUID", "PrimaryDosimeterUnit", "NumberOfFractionsPlanned"):
        assert ds[keyword].value == vendor[keyword].value, keyword
    for keyword in (
        "ReferencedBeamNumber",
        "BeamName",
        "BeamType",
        "RadiationType",
        "NumberOfControlPoints",
        "CurrentFractionNumber",
        "TreatmentDeliveryType",
        "TreatmentTerminationStatus",
    ):
        assert ours[keyword].value == theirs[keyword].value, keyword
    assert float(ours.SpecifiedPrimaryMeterset) == float(theirs.SpecifiedPrimaryMeterset) == 509.07073
    assert [float(cp.SpecifiedMeterset) for cp in ours.ControlPointDeliverySequence] == [
        float(cp.SpecifiedMeterset) for cp in theirs.ControlPointDeliverySequence
    ]


def test_real_engine_interrupted_then_continued_records_add_up(ihe_ro_dir: Path, tmp_path: Path) -> None:
    """End to end with the real reader, program builder and engine: interlock mid arc 1, then continuation."""
    reader = pytest.importorskip("simulators.plans.dicom_reader")
    linac = pytest.importorskip("simulators.devices.linac")
    engine_module = pytest.importorskip("simulators.core.engine")
    loader = pytest.importorskip("machine_models.loader")
    machine = loader.load_model("truebeam-millennium120")
    path = ihe_ro_dir / REAL_PLANS["vmat"]
    plan, plan_ds = reader.read_plan_file(path), pydicom.dcmread(path, force=True)

    def session(tasks: list[BeamTask], interlock_at_s: float | None, name: str) -> pydicom.Dataset:
        program = linac.build_linac_program(plan, machine, tasks)
        engine = engine_module.DeliveryEngine(program, seed=3, session_start=SESSION_START)
        if interlock_at_s is not None:
            engine.schedule_at(interlock_at_s, lambda: engine.interlock("DOOR"))
        result = engine.run()
        ds = build_beams_treatment_record(
            plan,
            result,
            machine,
            treatment_machine_name="IHE_V120",
            beam_tasks=tasks,
            program=program,
            plan_dataset=plan_ds,
        )
        written(ds, tmp_path, name)
        return ds

    first = session([BeamTask(1, fraction_number=2), BeamTask(2, fraction_number=2)], 10.0, "first.dcm")
    assert len(first.TreatmentSessionBeamSequence) == 1
    stopped = first.TreatmentSessionBeamSequence[0]
    assert stopped.TreatmentTerminationStatus == "MACHINE"
    partial = float(stopped.DeliveredPrimaryMeterset)
    beam_mu = float(stopped.SpecifiedPrimaryMeterset)
    assert 0.0 < partial < beam_mu
    last = stopped.ControlPointDeliverySequence[-1]
    assert float(last.DeliveredMeterset) == pytest.approx(partial, abs=1e-5)
    assert float(last.DeliveredMeterset) < float(last.SpecifiedMeterset)

    tasks = [BeamTask(1, "CONTINUATION", partial, beam_mu, fraction_number=2), BeamTask(2, fraction_number=2)]
    second = session(tasks, None, "second.dcm")
    resumed = second.TreatmentSessionBeamSequence[0]
    assert resumed.TreatmentDeliveryType == "CONTINUATION"
    assert partial + float(resumed.DeliveredPrimaryMeterset) == pytest.approx(beam_mu, abs=2e-5)
    delivered = [float(cp.DeliveredMeterset) for cp in resumed.ControlPointDeliverySequence]
    specified = [float(cp.SpecifiedMeterset) for cp in resumed.ControlPointDeliverySequence]
    assert delivered == [pytest.approx(max(partial, min(s, beam_mu)), abs=1e-5) for s in specified]
