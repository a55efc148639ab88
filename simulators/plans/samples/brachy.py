"""Sample brachytherapy RT Plans for the bundled afterloaders (no public brachy plans exist to test with).

Clinical-looking geometries, each a ``dciodvfy``-clean RT Plan with the RT Brachy Application Setups
module, its dwells encoded as PS3.3 C.8.8.15.7 asks (two control points per dwell, the source stepping
back from the most distal position; Control Point Relative Position in mm from the channel's proximal
end, so the most distal dwell has the largest value):

* ``hdr-cervix``: tandem and ring (2 channels, 5 mm steps), 7 Gy x 4 fractions, INTRACAVITARY.
* ``hdr-prostate``: 16 interstitial needles through a perineal template, 15 Gy x 1, INTERSTITIAL.
* ``hdr-cylinder``: single-channel vaginal cylinder (Delclos), 7 Gy x 3, INTRACAVITARY.
* ``pdr-cervix``: the tandem and ring as a PDR course, 24 hourly pulses, 1 fraction.

Dwell times are for the plan's source strength (the bundled model's installed source at its calibration
date by default, so the afterloader corrects them for decay at treatment time). :func:`build_brachy_plan`
makes any other plan (tests, the 40-channel benchmark) from :class:`ChannelSpec` items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from machine_models.schema import InstalledSource
from simulators.plans.samples.header import sample_plan_header

SAMPLE_BRACHY_PLANS = ("hdr-cervix", "hdr-prostate", "hdr-cylinder", "pdr-cervix")
DEFAULT_SOURCE = InstalledSource(  # the bundled microselectron-v3 source (machine_models/data)
    isotope="Ir-192",
    half_life_days=73.83,
    reference_air_kerma_rate_ugy_per_h=40800.0,
    calibration_datetime=datetime(2025, 1, 6, 9, 0),
    serial_number="RTSIM-IR192-0001",
    manufacturer="Elekta (Nucletron)",
    source_model_id="105.002",
)
DEFAULT_PDR_SOURCE = InstalledSource(  # the bundled microselectron-pdr source
    isotope="Ir-192",
    half_life_days=73.83,
    reference_air_kerma_rate_ugy_per_h=4080.0,
    calibration_datetime=datetime(2025, 1, 6, 9, 0),
    serial_number="RTSIM-IR192-P001",
    manufacturer="Elekta (Nucletron)",
)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel: dwell positions (delivery order, most distal first) and planned dwell times."""

    number: int
    length_mm: float
    positions_mm: tuple[float, ...]
    dwell_times_s: tuple[float, ...]
    points_mm: tuple[tuple[float, float, float], ...] | None = None  # 3D position per dwell
    applicator_id: str = ""
    step_mm: float = 5.0  # Source Applicator Step Size


def _ds(value: float, decimals: int = 4) -> str:
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _channel_item(
    spec: ChannelSpec, source_number: int, pulses: int | None, interval_s: float | None
) -> Dataset:
    if len(spec.positions_mm) != len(spec.dwell_times_s) or not spec.positions_mm:
        raise ValueError(f"channel {spec.number}: give one dwell time per dwell position (at least one)")
    item = Dataset()
    item.ChannelNumber = spec.number
    item.ChannelLength = _ds(spec.length_mm, 2)
    total = sum(spec.dwell_times_s)
    item.ChannelTotalTime = _ds(total, 4)
    item.SourceMovementType = "STEPWISE"
    if pulses is not None:
        item.NumberOfPulses = pulses
        item.PulseRepetitionInterval = _ds(interval_s or 3600.0, 1)
    item.SourceApplicatorNumber = spec.number
    item.SourceApplicatorID = (spec.applicator_id or f"CH{spec.number}")[:16]
    item.SourceApplicatorType = "RIGID" if spec.applicator_id else "FLEXIBLE"
    item.SourceApplicatorLength = _ds(spec.length_mm, 2)
    item.SourceApplicatorStepSize = _ds(spec.step_mm, 2)
    item.ReferencedROINumber = None
    item.TransferTubeNumber = spec.number
    item.TransferTubeLength = _ds(min(spec.length_mm, 1000.0), 2)
    item.ReferencedSourceNumber = source_number
    cps = []
    weight = 0.0
    for row, (position, dwell) in enumerate(zip(spec.positions_mm, spec.dwell_times_s, strict=True)):
        for end in (False, True):
            if end:
                weight += dwell
            cp = Dataset()
            cp.ControlPointIndex = len(cps)
            cp.ControlPointRelativePosition = _ds(position, 2)
            if spec.points_mm is not None:
                cp.ControlPoint3DPosition = [_ds(v, 2) for v in spec.points_mm[row]]
            cp.CumulativeTimeWeight = _ds(weight, 4)
            cps.append(cp)
    item.NumberOfControlPoints = len(cps)
    item.FinalCumulativeTimeWeight = _ds(weight, 4)
    item.BrachyControlPointSequence = Sequence(cps)
    return item


def build_brachy_plan(
    channels: SequenceOf[ChannelSpec],
    *,
    label: str,
    technique: str = "INTRACAVITARY",
    treatment_type: str = "HDR",
    setup_type: str = "FLETCHER_SUIT",
    machine_name: str = "mSelectronHDR",
    source: InstalledSource = DEFAULT_SOURCE,
    source_strength_datetime: datetime | None = None,
    fractions: int = 1,
    dose_gy: float = 7.0,
    pulses: int | None = None,
    pulse_interval_s: float | None = None,
    patient_id: str = "RTSIM-B01",
    patient_name: str = "RTSIM^Brachy",
    created: datetime | None = None,
) -> Dataset:
    """An APPROVED brachy RT Plan with one application setup holding ``channels``.

    The plan's source is ``source`` with its strength at ``source_strength_datetime`` (default: its
    calibration date, i.e. the installed source as certified). ``pulses``/``pulse_interval_s`` make a PDR
    plan: the control points then describe one pulse.
    """
    when = created or datetime(2026, 1, 5, 9, 0, 0)
    reference = source_strength_datetime or source.calibration_datetime
    days = (reference - source.calibration_datetime).total_seconds() / 86400.0
    strength = source.reference_air_kerma_rate_ugy_per_h * 2.0 ** (-days / source.half_life_days)
    ds = sample_plan_header(
        label,
        patient_id=patient_id,
        patient_name=patient_name,
        patient_sex="F" if "prostate" not in label else "M",
        when=when,
    )
    ds.BrachyTreatmentTechnique = technique
    ds.BrachyTreatmentType = treatment_type
    machine = Dataset()
    machine.TreatmentMachineName = machine_name
    machine.Manufacturer = source.manufacturer
    machine.InstitutionName = ""
    machine.ManufacturerModelName = ""
    machine.DeviceSerialNumber = ""
    ds.TreatmentMachineSequence = Sequence([machine])
    src = Dataset()
    src.SourceNumber = 1
    src.SourceSerialNumber = source.serial_number
    src.SourceModelID = source.source_model_id or "UNKNOWN"
    src.SourceType = source.source_type
    src.SourceManufacturer = source.manufacturer
    src.SourceIsotopeName = source.isotope
    src.SourceIsotopeHalfLife = _ds(source.half_life_days, 3)
    src.ReferenceAirKermaRate = _ds(strength, 3)  # Source Strength (Units) are for non-gamma emitters only
    src.SourceStrengthReferenceDate = reference.strftime("%Y%m%d")
    src.SourceStrengthReferenceTime = reference.strftime("%H%M%S")
    ds.SourceSequence = Sequence([src])
    items = [_channel_item(spec, 1, pulses, pulse_interval_s) for spec in channels]
    setup = Dataset()
    setup.ApplicationSetupType = setup_type
    setup.ApplicationSetupNumber = 1
    setup.ApplicationSetupName = label[:64]
    total_time_h = sum(float(item.ChannelTotalTime) for item in items) * (pulses or 1) / 3600.0
    setup.TotalReferenceAirKerma = _ds(strength * total_time_h, 3)  # µGy at 1 m (RAKR x time)
    setup.ChannelSequence = Sequence(items)
    ds.ApplicationSetupSequence = Sequence([setup])
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = fractions
    group.NumberOfBeams = 0
    group.NumberOfBrachyApplicationSetups = 1
    ref = Dataset()
    ref.ReferencedBrachyApplicationSetupNumber = 1
    ref.BrachyApplicationSetupDose = _ds(dose_gy, 3)
    group.ReferencedBrachyApplicationSetupSequence = Sequence([ref])
    ds.FractionGroupSequence = Sequence([group])
    patient_setup = Dataset()
    patient_setup.PatientSetupNumber = 1
    patient_setup.PatientPosition = "HFS"
    ds.PatientSetupSequence = Sequence([patient_setup])
    ds.ApprovalStatus = "APPROVED"
    ds.ReviewDate = ds.StudyDate
    ds.ReviewTime = ds.StudyTime
    ds.ReviewerName = "Physicist^Sample"
    return ds


# --- geometries ---------------------------------------------------------------------------------------


def _line(
    number: int,
    length_mm: float,
    count: int,
    step_mm: float,
    times: SequenceOf[float],
    start: tuple[float, float, float],
    direction: tuple[float, float, float],
    applicator: str = "",
) -> ChannelSpec:
    """A straight channel: ``count`` dwells stepping back from the tip (6 mm short of the channel end)."""
    tip = length_mm - 6.0
    positions = tuple(round(tip - k * step_mm, 2) for k in range(count))
    points = tuple(
        tuple(round(start[i] - k * step_mm * direction[i], 2) for i in range(3)) for k in range(count)
    )
    return ChannelSpec(number, length_mm, positions, tuple(times), points, applicator, step_mm)  # type: ignore[arg-type]


def _tandem_ring_channels(scale: float = 1.0) -> list[ChannelSpec]:
    tandem_times = [8.2, 12.5, 15.9, 17.8, 18.4, 18.1, 17.0, 15.6, 14.2, 13.1, 12.4, 11.8]
    tandem = _line(
        1, 1200.0, 12, 5.0, [t * scale for t in tandem_times], (0.0, 0.0, 60.0), (0.0, 0.0, 1.0), "TANDEM 60"
    )
    ring_count, radius = 10, 17.0
    ring_positions = tuple(round(1200.0 - 6.0 - 5.0 * k, 2) for k in range(ring_count))
    ring_points = tuple(
        (
            round(radius * math.cos(math.radians(45 + 27 * k)), 2),
            round(radius * math.sin(math.radians(45 + 27 * k)), 2),
            0.0,
        )
        for k in range(ring_count)
    )
    ring_times = [6.1, 9.4, 11.8, 12.9, 13.2, 13.2, 12.9, 11.8, 9.4, 6.1]
    ring = ChannelSpec(
        2, 1200.0, ring_positions, tuple(t * scale for t in ring_times), ring_points, "RING 30"
    )
    return [tandem, ring]


def _prostate_channels() -> list[ChannelSpec]:
    channels = []
    grid = [(x, y) for y in (-15.0, -5.0, 5.0, 15.0) for x in (-15.0, -5.0, 5.0, 15.0)]
    for number, (x, y) in enumerate(grid, start=1):
        edge = abs(x) == 15.0 or abs(y) == 15.0
        count = 8 if edge else 9
        base = 7.5 if edge else 4.2
        times = [round(base * (1.0 + 0.15 * math.sin(0.7 * k + number)), 1) for k in range(count)]
        channels.append(_line(number, 1200.0, count, 5.0, times, (x, y, 45.0), (0.0, 0.0, 1.0), ""))
    return channels


def _cylinder_channels() -> list[ChannelSpec]:
    times = [22.4, 14.1, 12.6, 12.2, 12.1, 12.3, 13.0, 15.8]
    return [_line(1, 1200.0, 8, 5.0, times, (0.0, 0.0, 40.0), (0.0, 0.0, 1.0), "CYLINDER 30")]


def sample_brachy_plan(
    name: str = "hdr-cervix",
    *,
    machine_name: str | None = None,
    source: InstalledSource | None = None,
    patient_id: str = "RTSIM-B01",
    patient_name: str = "RTSIM^Brachy",
    created: datetime | None = None,
) -> Dataset:
    """A sample plan ``name`` (one of :data:`SAMPLE_BRACHY_PLANS`) for the bundled afterloaders."""
    common = {"patient_id": patient_id, "patient_name": patient_name, "created": created}
    if name == "hdr-cervix":
        return build_brachy_plan(
            _tandem_ring_channels(),
            label=name,
            technique="INTRACAVITARY",
            setup_type="FLETCHER_SUIT",
            machine_name=machine_name or "mSelectronHDR",
            source=source or DEFAULT_SOURCE,
            fractions=4,
            dose_gy=7.0,
            **common,
        )
    if name == "hdr-prostate":
        return build_brachy_plan(
            _prostate_channels(),
            label=name,
            technique="INTERSTITIAL",
            setup_type="PERINEAL",
            machine_name=machine_name or "mSelectronHDR",
            source=source or DEFAULT_SOURCE,
            fractions=1,
            dose_gy=15.0,
            **common,
        )
    if name == "hdr-cylinder":
        return build_brachy_plan(
            _cylinder_channels(),
            label=name,
            technique="INTRACAVITARY",
            setup_type="DELCLOS",
            machine_name=machine_name or "mSelectronHDR",
            source=source or DEFAULT_SOURCE,
            fractions=3,
            dose_gy=7.0,
            **common,
        )
    if name == "pdr-cervix":
        # the same tandem and ring, 0.5 Gy pulses with a source ten times weaker: pulse times x 0.5 x 10 / 7
        return build_brachy_plan(
            _tandem_ring_channels(scale=5.0 / 7.0),
            label=name,
            technique="INTRACAVITARY",
            setup_type="FLETCHER_SUIT",
            treatment_type="PDR",
            machine_name=machine_name or "mSelectronPDR",
            source=source or DEFAULT_PDR_SOURCE,
            fractions=1,
            dose_gy=12.0,
            pulses=24,
            pulse_interval_s=3600.0,
            **common,
        )
    raise ValueError(f"unknown sample brachy plan {name!r}; choose one of {', '.join(SAMPLE_BRACHY_PLANS)}")
