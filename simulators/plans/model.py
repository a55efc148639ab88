"""Typed plan domain objects shared by every device kind.

The DICOM ``Dataset`` stays at the edges: :mod:`simulators.plans.dicom_reader` turns an RT Plan into
these frozen objects, and the record writers turn results back into DICOM. Inside, code works on these
objects only. Per-control-point values of a beam are numpy arrays (one row per control point) with the
DICOM inheritance rule already applied (values given once are carried forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class BeamTechnique(StrEnum):
    """How a linac beam is delivered, derived from beam type, control points and MLC motion."""

    STATIC = "static"  # two control points, nothing moves
    STEP_AND_SHOOT = "step_and_shoot"  # STATIC beam type, many control points, beam held while leaves move
    SLIDING_WINDOW = "sliding_window"  # DYNAMIC, gantry fixed, leaves move with beam on
    CONFORMAL_ARC = "conformal_arc"  # gantry moves, MLC follows the target or is fixed
    VMAT = "vmat"  # gantry moves, MLC and dose rate modulated
    ARC = "arc"  # gantry moves, no MLC


@dataclass(frozen=True, slots=True)
class PatientStudy:
    """Patient and study identity copied from the plan into every record."""

    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_id: str
    study_date: str
    study_time: str
    referring_physician_name: str
    accession_number: str
    frame_of_reference_uid: str | None


@dataclass(frozen=True, slots=True)
class PlanIdentity:
    """Who the plan is and where it came from."""

    sop_class_uid: str
    sop_instance_uid: str
    label: str
    name: str
    approval_status: str  # APPROVED / UNAPPROVED / REJECTED, or "" when the module is absent
    source: str  # file path or "network", for error messages
    patient: PatientStudy


@dataclass(frozen=True, slots=True)
class FractionGroup:
    """One fraction group: which beams it delivers with what meterset."""

    number: int
    fractions_planned: int
    beam_metersets_mu: dict[int, float]  # beam number -> Beam Meterset


@dataclass(frozen=True, slots=True)
class WedgeSpec:
    """A wedge named in a beam (Wedge Sequence item)."""

    number: int
    wedge_id: str
    wedge_type: str  # STANDARD, DYNAMIC, MOTORIZED
    angle_deg: float
    orientation_deg: float


@dataclass(frozen=True, slots=True)
class LinacBeam:
    """One photon or electron beam with its control points as arrays.

    Array shapes use ``n`` = number of control points. Jaws are ``(n, 2)`` (jaw 1, jaw 2) in mm,
    ``mlc_mm`` is ``(n, 2, pairs)`` (bank A = index 0, bank B = index 1) in mm; absent devices are
    ``None``. ``cumulative_meterset_mu`` is Beam Meterset x CMW / final CMW. Rotation directions
    (``"CW"``, ``"CC"``, ``"NONE"``) are per control point and apply to the segment *after* it.
    ``dose_rate_set_mu_per_min`` holds NaN where the plan gives none.
    """

    number: int
    name: str
    description: str
    beam_type: str  # STATIC or DYNAMIC
    radiation_type: str  # PHOTON or ELECTRON
    technique: BeamTechnique
    treatment_machine_name: str
    primary_dosimeter_unit: str  # MU or MINUTE
    source_axis_distance_mm: float
    treatment_delivery_type: str  # TREATMENT, CONTINUATION, ...
    beam_meterset_mu: float
    final_cumulative_meterset_weight: float
    nominal_energy_mev: float
    fluence_mode_id: str | None  # "FFF" for non-standard fluence, else None
    # beam-limiting devices declared in the Beam Limiting Device Sequence: type -> number of pairs
    device_pair_counts: dict[str, int]
    mlc_device_type: str | None  # "MLCX" / "MLCY" / None
    mlc_leaf_boundaries_mm: tuple[float, ...] | None
    wedges: tuple[WedgeSpec, ...]
    applicator_id: str | None
    applicator_type: str | None
    number_of_compensators: int
    number_of_boli: int
    number_of_blocks: int
    referenced_patient_setup_number: int | None
    referenced_tolerance_table_number: int | None
    # per-control-point arrays
    control_point_indices: np.ndarray  # (n,) int
    cumulative_meterset_weight: np.ndarray  # (n,)
    cumulative_meterset_mu: np.ndarray  # (n,)
    dose_rate_set_mu_per_min: np.ndarray  # (n,), NaN when absent
    gantry_deg: np.ndarray  # (n,)
    gantry_direction: tuple[str, ...]  # (n,)
    collimator_deg: np.ndarray
    collimator_direction: tuple[str, ...]
    couch_deg: np.ndarray  # patient support angle
    couch_direction: tuple[str, ...]
    table_top_vertical_mm: np.ndarray  # NaN when absent
    table_top_longitudinal_mm: np.ndarray
    table_top_lateral_mm: np.ndarray
    jaw_x_mm: np.ndarray | None  # (n, 2) from X or ASYMX
    jaw_x_device_type: str | None  # "X" or "ASYMX"
    jaw_y_mm: np.ndarray | None  # (n, 2) from Y or ASYMY
    jaw_y_device_type: str | None
    mlc_mm: np.ndarray | None  # (n, 2, pairs)
    wedge_in: np.ndarray  # (n, number of wedges) bool, True = IN

    @property
    def control_point_count(self) -> int:
        return int(self.cumulative_meterset_mu.shape[0])


@dataclass(frozen=True, slots=True)
class LinacPlan:
    """An RT Plan for a C-arm linac: identity, fraction groups and beams in plan order."""

    identity: PlanIdentity
    fraction_groups: tuple[FractionGroup, ...]
    beams: tuple[LinacBeam, ...]
    patient_position: str  # HFS, ...

    def beam(self, number: int) -> LinacBeam:
        """The beam with this Beam Number (KeyError if absent)."""
        for beam in self.beams:
            if beam.number == number:
                return beam
        raise KeyError(number)


@dataclass(frozen=True, slots=True)
class BeamTask:
    """What the TMS asks for one beam in this session (RT Beams Delivery Instruction Beam Task).

    For a CONTINUATION, ``start_meterset_mu``/``end_meterset_mu`` bound the cumulative beam meterset
    to deliver (PS3.3 C.8.8.29); the record follows DelMS[CP] = MAX(start, MIN(SpecMS[CP], end)).
    """

    beam_number: int
    delivery_type: str = "TREATMENT"  # TREATMENT or CONTINUATION
    start_meterset_mu: float | None = None
    end_meterset_mu: float | None = None
    fraction_number: int = 1
    fraction_group_number: int = 1
