"""Sample photon plans for a Varian Millennium 120 linac: static MLC, step-and-shoot, VMAT.

The plans are synthetic but shaped like a planning system's output (control-point inheritance, bank A then
bank B leaf positions, Final Cumulative Meterset Weight 1) and are ``dciodvfy``-clean. They exist so that
``rtsim demo`` and the tests have plans on a machine without the IHE-RO data.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from simulators.plans.samples.header import sample_plan_header

MILLENNIUM120_BOUNDARIES_MM: tuple[float, ...] = tuple(
    [-200.0 + 10.0 * i for i in range(10)]
    + [-100.0 + 5.0 * i for i in range(40)]
    + [100.0 + 10.0 * i for i in range(11)]
)

SAMPLE_PLANS = ("static-mlc", "step-and-shoot", "vmat")


def _ds_number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def _leaf_centres_mm() -> np.ndarray:
    bounds = np.asarray(MILLENNIUM120_BOUNDARIES_MM)
    return (bounds[:-1] + bounds[1:]) / 2.0


def _aperture(half_width_x_mm: float, half_length_y_mm: float, shift_x_mm: float = 0.0) -> list[float]:
    """Leaf positions (bank A then bank B) for an elliptical aperture; closed pairs meet off-field."""
    centres = _leaf_centres_mm()
    inside = np.clip(1.0 - (centres / half_length_y_mm) ** 2, 0.0, None)
    half = half_width_x_mm * np.sqrt(inside)
    gap_mm = 0.5
    half = np.where(half < gap_mm / 2, gap_mm / 2, half)
    closed_at_x = np.where(inside > 0, shift_x_mm, -60.0)  # closed pairs parked under the jaw
    bank_a = np.round(closed_at_x - np.where(inside > 0, half, gap_mm / 2), 2)
    bank_b = np.round(closed_at_x + np.where(inside > 0, half, gap_mm / 2), 2)
    return [float(v) for v in np.concatenate([bank_a, bank_b])]


def _bld_positions(jaw_x: tuple[float, float], jaw_y: tuple[float, float], mlc: list[float]) -> Sequence:
    items = []
    for device, positions in (("ASYMX", list(jaw_x)), ("ASYMY", list(jaw_y)), ("MLCX", mlc)):
        item = Dataset()
        item.RTBeamLimitingDeviceType = device
        item.LeafJawPositions = [_ds_number(p) for p in positions]
        items.append(item)
    return Sequence(items)


def _beam_skeleton(number: int, name: str, beam_type: str, machine_name: str) -> Dataset:
    beam = Dataset()
    beam.BeamNumber = number
    beam.BeamName = name
    beam.BeamDescription = name
    beam.BeamType = beam_type
    beam.RadiationType = "PHOTON"
    beam.TreatmentMachineName = machine_name
    beam.PrimaryDosimeterUnit = "MU"
    beam.SourceAxisDistance = "1000"
    beam.TreatmentDeliveryType = "TREATMENT"
    devices = []
    for device, pairs in (("ASYMX", 1), ("ASYMY", 1), ("MLCX", 60)):
        item = Dataset()
        item.RTBeamLimitingDeviceType = device
        item.NumberOfLeafJawPairs = pairs
        if device == "MLCX":
            item.LeafPositionBoundaries = [_ds_number(b) for b in MILLENNIUM120_BOUNDARIES_MM]
        devices.append(item)
    beam.BeamLimitingDeviceSequence = Sequence(devices)
    beam.NumberOfWedges = 0
    beam.NumberOfCompensators = 0
    beam.NumberOfBoli = 0
    beam.NumberOfBlocks = 0
    beam.FinalCumulativeMetersetWeight = "1"
    beam.ReferencedPatientSetupNumber = 1
    return beam


def _first_control_point(gantry_deg: float, direction: str, jaw_x, jaw_y, mlc: list[float]) -> Dataset:
    cp = Dataset()
    cp.ControlPointIndex = 0
    cp.NominalBeamEnergy = "6"
    cp.DoseRateSet = "600"
    cp.BeamLimitingDevicePositionSequence = _bld_positions(jaw_x, jaw_y, mlc)
    cp.GantryAngle = _ds_number(gantry_deg)
    cp.GantryRotationDirection = direction
    cp.BeamLimitingDeviceAngle = "0"
    cp.BeamLimitingDeviceRotationDirection = "NONE"
    cp.PatientSupportAngle = "0"
    cp.PatientSupportRotationDirection = "NONE"
    cp.TableTopEccentricAngle = "0"
    cp.TableTopEccentricRotationDirection = "NONE"
    cp.TableTopVerticalPosition = "0"
    cp.TableTopLongitudinalPosition = "0"
    cp.TableTopLateralPosition = "0"
    cp.IsocenterPosition = ["0", "0", "0"]
    cp.CumulativeMetersetWeight = "0"
    return cp


def _mlc_only_cp(
    index: int, weight: float, mlc: list[float] | None, gantry_deg: float | None = None
) -> Dataset:
    cp = Dataset()
    cp.ControlPointIndex = index
    if mlc is not None:
        item = Dataset()
        item.RTBeamLimitingDeviceType = "MLCX"
        item.LeafJawPositions = [_ds_number(p) for p in mlc]
        cp.BeamLimitingDevicePositionSequence = Sequence([item])
    if gantry_deg is not None:
        cp.GantryAngle = _ds_number(gantry_deg)
        cp.GantryRotationDirection = "NONE"
    cp.CumulativeMetersetWeight = _ds_number(weight)
    return cp


def _static_mlc_beam(number: int, machine_name: str) -> tuple[Dataset, float]:
    beam = _beam_skeleton(number, "Static MLC", "STATIC", machine_name)
    mlc = _aperture(40.0, 45.0)
    cps = [_first_control_point(0.0, "NONE", (-50, 50), (-50, 50), mlc), _mlc_only_cp(1, 1.0, None)]
    beam.ControlPointSequence = Sequence(cps)
    beam.NumberOfControlPoints = len(cps)
    return beam, 120.0


def _step_and_shoot_beam(number: int, machine_name: str) -> tuple[Dataset, float]:
    beam = _beam_skeleton(number, "Step and shoot", "STATIC", machine_name)
    shapes = [
        _aperture(45.0, 45.0),
        _aperture(30.0, 40.0, -10.0),
        _aperture(25.0, 30.0, 10.0),
        _aperture(15.0, 20.0),
    ]
    weights = [0.4, 0.3, 0.2, 0.1]
    first = _first_control_point(90.0, "NONE", (-55, 55), (-50, 50), shapes[0])
    cps = [first]
    cumulative = 0.0
    for segment, (shape, weight) in enumerate(zip(shapes, weights, strict=True)):
        if segment:
            cps.append(_mlc_only_cp(len(cps), cumulative, shape))
        cumulative = round(cumulative + weight, 6)
        cps.append(_mlc_only_cp(len(cps), cumulative, shape))
    beam.ControlPointSequence = Sequence(cps)
    beam.NumberOfControlPoints = len(cps)
    return beam, 150.0


def _vmat_beam(number: int, machine_name: str) -> tuple[Dataset, float]:
    beam = _beam_skeleton(number, "VMAT arc", "DYNAMIC", machine_name)
    start_deg, arc_deg, step_deg = 181.0, 358.0, 2.0
    count = int(arc_deg / step_deg) + 1
    rng = np.random.default_rng(2024)
    weights = np.concatenate([[0.0], np.cumsum(rng.uniform(0.5, 1.5, count - 1))])
    weights = weights / weights[-1]
    cps = []
    for index in range(count):
        gantry = (start_deg + index * step_deg) % 360.0
        phase = index / (count - 1) * 2.0 * np.pi
        mlc = _aperture(25.0 + 12.0 * np.sin(phase), 40.0, 8.0 * np.sin(2.0 * phase))
        if index == 0:
            cps.append(_first_control_point(gantry, "CW", (-50, 50), (-50, 50), mlc))
        else:
            cp = _mlc_only_cp(index, float(weights[index]), mlc, gantry)
            cp.GantryRotationDirection = "CW" if index < count - 1 else "NONE"
            cps.append(cp)
    beam.ControlPointSequence = Sequence(cps)
    beam.NumberOfControlPoints = len(cps)
    return beam, 280.0


_BUILDERS = {"static-mlc": _static_mlc_beam, "step-and-shoot": _step_and_shoot_beam, "vmat": _vmat_beam}


def sample_linac_plan(
    kind: str = "vmat",
    *,
    machine_name: str = "TrueBeam1",
    patient_id: str = "RTSIM-001",
    patient_name: str = "RTSIM^Demo",
    fractions: int = 5,
    created: datetime | None = None,
) -> Dataset:
    """An APPROVED single-beam RT Plan of ``kind`` (one of :data:`SAMPLE_PLANS`) for ``machine_name``."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown sample plan {kind!r}; choose one of {', '.join(SAMPLE_PLANS)}")
    when = created or datetime(2026, 1, 5, 9, 0, 0)
    ds = sample_plan_header(
        kind, patient_id=patient_id, patient_name=patient_name, patient_sex="O", when=when
    )
    beam, meterset_mu = _BUILDERS[kind](1, machine_name)
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = fractions
    group.NumberOfBeams = 1
    group.NumberOfBrachyApplicationSetups = 0
    ref = Dataset()
    ref.ReferencedBeamNumber = 1
    ref.BeamMeterset = _ds_number(meterset_mu)
    group.ReferencedBeamSequence = Sequence([ref])
    ds.FractionGroupSequence = Sequence([group])
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = "HFS"
    ds.PatientSetupSequence = Sequence([setup])
    ds.BeamSequence = Sequence([beam])
    ds.ApprovalStatus = "APPROVED"
    ds.ReviewDate = ds.StudyDate
    ds.ReviewTime = ds.StudyTime
    ds.ReviewerName = "Physicist^Sample"
    return ds
