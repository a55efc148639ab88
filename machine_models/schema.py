"""Typed, frozen description of what a treatment machine can do.

These objects are built by :mod:`machine_models.loader` from the TOML files in ``machine_models/data``
(format: ``docs/machine-models.md``). Units are in the field names. Nothing here imports SimPy, pydicom
or Textual: a machine model is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

SCHEMA_VERSION = 1


class DeviceKind(StrEnum):
    """The kinds of treatment delivery device rtsim simulates."""

    LINAC = "linac"
    TOMOTHERAPY = "tomotherapy"
    GAMMA_KNIFE = "gamma_knife"
    AFTERLOADER = "afterloader"


class DoseRateServo(StrEnum):
    """How the machine may lower its dose rate to follow slower axes."""

    CONTINUOUS = "continuous"  # any value up to the maximum (Varian, Elekta CVDR)
    BINNED = "binned"  # only the listed bins (Elekta legacy: DRmax / 2**k)


@dataclass(frozen=True, slots=True)
class AxisLimits:
    """Limits of one mechanical axis.

    ``unit`` is ``"deg"`` for rotations and ``"mm"`` for translations; positions and speeds are in that
    unit. ``max_accel_per_s2`` is ``None`` where no acceleration is known (the move is then vmax-only).
    ``circular`` rotations (gantry, collimator, couch) wrap at 360 degrees.
    """

    name: str
    unit: str
    min_position: float
    max_position: float
    max_speed_per_s: float
    max_accel_per_s2: float | None = None
    circular: bool = False


@dataclass(frozen=True, slots=True)
class JawModel:
    """One pair of jaws (``X``/``ASYMX`` or ``Y``/``ASYMY``), positions in mm at the isocentre plane.

    ``min_position_mm``/``max_position_mm`` bound each jaw; ``max_overtravel_mm`` is how far one jaw may
    cross the central axis (jaw 1 may reach ``+max_overtravel_mm``, jaw 2 ``-max_overtravel_mm``).
    """

    device_types: tuple[str, ...]  # e.g. ("X", "ASYMX")
    min_position_mm: float
    max_position_mm: float
    max_overtravel_mm: float
    max_speed_mm_per_s: float
    max_accel_mm_per_s2: float | None = None


@dataclass(frozen=True, slots=True)
class MlcModel:
    """A multileaf collimator.

    ``leaf_boundaries_mm`` has ``leaf_pair_count + 1`` values (DICOM Leaf Position Boundaries).
    ``max_leaf_spread_mm`` is the largest distance between the most extended and most retracted leaf
    of one bank (Varian "over-travel"/carriage limit); ``min_leaf_gap_mm`` is the minimum mechanical
    gap between opposed leaves of a pair (including closed pairs).
    """

    device_type: str  # "MLCX" or "MLCY"
    leaf_pair_count: int
    leaf_boundaries_mm: tuple[float, ...]
    min_position_mm: float
    max_position_mm: float
    max_leaf_spread_mm: float
    min_leaf_gap_mm: float
    interdigitation: bool
    max_leaf_speed_mm_per_s: float
    max_leaf_accel_mm_per_s2: float | None = None
    position_noise_sd_mm: float = 0.0


@dataclass(frozen=True, slots=True)
class Energy:
    """One installed beam energy.

    ``fluence_mode_id`` is DICOM Fluence Mode ID (``"FFF"``) for non-standard fluence, or ``None``.
    ``dose_rate_bins_mu_per_min`` is set only for a binned dose-rate servo.
    """

    label: str  # "6X", "6FFF", "9E"
    radiation_type: str  # "PHOTON" or "ELECTRON"
    nominal_energy_mev: float
    fluence_mode_id: str | None
    max_dose_rate_mu_per_min: float
    min_dose_rate_mu_per_min: float = 5.0
    dose_rate_bins_mu_per_min: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Wedge:
    """A wedge the machine can use. ``wedge_type`` as in DICOM: STANDARD, MOTORIZED, DYNAMIC."""

    wedge_id: str
    wedge_type: str
    angle_deg: float


@dataclass(frozen=True, slots=True)
class LinacModel:
    """The linac-specific part of a machine model."""

    gantry: AxisLimits
    collimator: AxisLimits
    couch_rotation: AxisLimits
    couch_vertical: AxisLimits
    couch_longitudinal: AxisLimits
    couch_lateral: AxisLimits
    jaws: tuple[JawModel, ...]
    mlc: MlcModel | None
    energies: tuple[Energy, ...]
    dose_rate_servo: DoseRateServo
    wedges: tuple[Wedge, ...] = ()
    electron_applicators: tuple[str, ...] = ()
    meterset_resolution_mu: float = 0.01
    beam_on_startup_s: float = 0.0
    angle_noise_sd_deg: float = 0.0
    jaw_noise_sd_mm: float = 0.0
    couch_noise_sd_mm: float = 0.0


@dataclass(frozen=True, slots=True)
class InstalledSource:
    """The radioactive source installed in an afterloader, as on its calibration certificate.

    ``reference_air_kerma_rate_ugy_per_h`` is the Reference Air Kerma Rate (DICOM (300A,022A), µGy/h at
    1 m, numerically the air-kerma strength in U) at ``calibration_datetime`` (naive local time).
    """

    isotope: str  # DICOM Source Isotope Name, e.g. "Ir-192"
    half_life_days: float
    reference_air_kerma_rate_ugy_per_h: float
    calibration_datetime: datetime
    serial_number: str
    manufacturer: str
    source_model_id: str = ""
    source_type: str = "LINE"  # DICOM Source Type: POINT, LINE, CYLINDER, SPHERE


@dataclass(frozen=True, slots=True)
class AfterloaderModel:
    """The afterloader-specific part of a machine model (HDR/PDR remote afterloader).

    Source positions are distances along a channel from its proximal end at the indexer (as DICOM
    Control Point Relative Position); the safe is ``safe_to_channel_mm`` before that end.
    ``step_sizes_mm`` are the allowed distances between dwell position indices of one channel;
    ``max_dwell_positions_per_channel`` bounds the number of position indices one channel spans.
    """

    treatment_types: tuple[str, ...]  # DICOM Brachy Treatment Type it delivers: "HDR", "PDR"
    channel_count: int
    max_channel_length_mm: float
    min_channel_length_mm: float
    step_sizes_mm: tuple[float, ...]
    max_dwell_positions_per_channel: int
    dwell_time_resolution_s: float
    max_dwell_time_s: float | None
    source_speed_mm_per_s: float
    check_cable_speed_mm_per_s: float
    dwell_settle_s: float
    indexer_move_s: float
    safe_to_channel_mm: float
    source: InstalledSource
    source_strength_tolerance_percent: float
    emergency_retraction_s: float
    dwell_time_noise_sd_s: float = 0.0
    position_noise_sd_mm: float = 0.0


@dataclass(frozen=True, slots=True)
class MachineModel:
    """A whole machine model as loaded from one TOML file.

    ``treatment_machine_name`` is the name the machine answers to in RT Plans by default (DICOM
    Treatment Machine Name); installations may override it. Exactly one of the kind-specific parts is
    set, matching ``kind``.
    """

    schema_version: int
    model_id: str
    kind: DeviceKind
    manufacturer: str
    model_name: str
    treatment_machine_name: str
    description: str
    source_file: Path | None
    linac: LinacModel | None = None
    extra: dict[str, object] = field(default_factory=dict)
    afterloader: AfterloaderModel | None = None
