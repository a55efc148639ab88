"""DICOM RT Plan -> :class:`~simulators.plans.model.LinacPlan` (the reader edge: pydicom stays here).

Reading is lenient about what does not matter (no file meta, over-long DS strings, missing optional
attributes) and strict about what does: a file that is not an RT Plan, a truncated sequence, a control
point that breaks the PS3.3 rules. Those raise :class:`PlanReadError` naming the file, beam, control
point and attribute. RT Ion Plans and brachy plans are recognised (:func:`plan_kind`) and refused with a
:class:`PlanRefusedError` by :func:`read_plan_dataset`, since this reader builds linac plans only.

Control-point rules applied (PS3.3 C.8.8.14): every value given at control point 0 is carried forward
until a later control point changes it; rotation directions apply to the segment *after* their control
point; ``MU(CP) = Beam Meterset x CMW(CP) / Final Cumulative Meterset Weight``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_description, dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from simulators.core.gc_pause import gc_paused
from simulators.errors import PlanReadError, PlanRefusedError
from simulators.plans.dicom_bytes import (
    CONTROL_POINT_SEQUENCE_TAG,
    LAZY_SEQUENCE_TAGS,
    DicomBytesError,
    RawItem,
    complete_items,
    parse_items,
    read_part10,
)
from simulators.plans.model import (
    BeamTechnique,
    FractionGroup,
    LinacBeam,
    LinacPlan,
    PatientStudy,
    PlanIdentity,
    WedgeSpec,
)

log = logging.getLogger(__name__)

RT_PLAN_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.5"
RT_ION_PLAN_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.8"

ION_PLAN_REFUSAL = "RT Ion Plan: this machine delivers photon and electron beams only"
BRACHY_PLAN_REFUSAL = (
    "RT Plan with brachytherapy application setups: this machine delivers photon and electron beams only"
)

JAW_X_TYPES = ("X", "ASYMX")
JAW_Y_TYPES = ("Y", "ASYMY")
MLC_TYPES = ("MLCX", "MLCY")
ROTATION_DIRECTIONS = ("CW", "CC", "NONE")

# Motion smaller than these counts as "not moving" when classifying the technique.
POSITION_TOLERANCE_MM = 0.01
ANGLE_TOLERANCE_DEG = 0.01
# Relative spread of MU per degree below which an arc counts as unmodulated (conformal arc).
CONSTANT_MU_PER_DEG_TOLERANCE = 0.01
# Last CMW may differ from Final Cumulative Meterset Weight by this fraction (DS rounding).
FINAL_CMW_RELATIVE_TOLERANCE = 1e-4


def plan_kind(ds: Dataset) -> str:
    """What kind of plan a dataset is: ``"linac"``, ``"ion"``, ``"brachy"`` or ``"unknown"``.

    ``"linac"`` means an RT Plan with a Beam Sequence (C-arm photon/electron beams); ``"brachy"`` an RT
    Plan with RT Brachy Application Setups; ``"ion"`` an RT Ion Plan. Anything else is ``"unknown"``.
    """
    sop_class = _sop_class_uid(ds)
    if sop_class == RT_ION_PLAN_SOP_CLASS or "IonBeamSequence" in ds:
        return "ion"
    if sop_class != RT_PLAN_SOP_CLASS:
        return "unknown"
    if "BeamSequence" in ds:
        return "linac"
    if "ApplicationSetupSequence" in ds or "BrachyTreatmentType" in ds:
        return "brachy"
    return "unknown"


def read_plan_file(path: str | Path) -> LinacPlan:
    """Read an RT Plan file (with or without file meta) into a :class:`LinacPlan`.

    Raises :class:`PlanReadError` for a missing, empty, truncated, corrupt or non-RT-Plan file, and
    :class:`PlanRefusedError` for an RT Ion Plan or a brachy plan.
    """
    return read_plan_dataset(read_dataset_file(path), str(path))


def read_dataset_file(path: str | Path) -> Dataset:
    """Read any DICOM file leniently (no file meta, sloppy values); :class:`PlanReadError` if unreadable.

    For callers that need the Dataset itself (to send it on, or to copy attributes into a record)
    before :func:`read_plan_dataset` turns it into a plan.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise PlanReadError(f"{source}: no such file")
    if path.stat().st_size == 0:
        raise PlanReadError(f"{source}: the file is empty, not a DICOM RT Plan")
    with lenient_reading(), warnings.catch_warnings(), gc_paused():
        warnings.simplefilter("ignore")  # pydicom warns about garbage before we refuse it with a message
        try:
            ds = read_part10(path)  # the fast walk of a plain little-endian Part 10 file
        except DicomBytesError:
            ds = None  # pydicom reads it, or says what is wrong, below
        try:
            if ds is None:
                ds = pydicom.dcmread(path, force=True)
            # Sequences are parsed lazily: parse them all now, so a corrupt nesting fails here. Plain
            # values stay raw until used (decoding ~100 000 leaf positions up front cost ~1 s).
            _parse_sequences(ds)
        except Exception as exc:  # pydicom raises many kinds (struct.error, EOFError, ValueError...)
            raise PlanReadError(f"{source}: cannot be read as DICOM ({type(exc).__name__}: {exc})") from exc
    return ds


def _parse_sequences(ds: Dataset) -> None:
    """Turn every raw sequence element of ``ds`` (recursively) into parsed items.

    Control Point Sequences stay encoded: the plan reader parses them fast and names the beam when
    they are damaged (:func:`_control_point_items`).
    """
    for tag in list(ds.keys()):
        element = ds.get_item(tag)
        vr = element.VR
        if vr is None and isinstance(element, RawDataElement):
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr != "SQ":
            continue
        if tag in LAZY_SEQUENCE_TAGS and isinstance(element, RawDataElement):
            continue
        for item in ds[tag].value or ():
            _parse_sequences(item)


def read_plan_dataset(ds: Dataset, source: str) -> LinacPlan:
    """Turn an RT Plan dataset into a :class:`LinacPlan`; ``source`` names it in error messages."""
    kind = plan_kind(ds)
    if kind == "ion":
        raise PlanRefusedError([f"{source}: {ION_PLAN_REFUSAL}"])
    if kind == "brachy":
        raise PlanRefusedError([f"{source}: {BRACHY_PLAN_REFUSAL}"])
    if kind == "unknown":
        raise PlanReadError(f"{source}: not an RT Plan with beams: {_describe_sop_class(ds)}")
    with lenient_reading():
        try:
            return _read_linac_plan(ds, source)
        except (PlanReadError, PlanRefusedError):
            raise
        except Exception as exc:
            raise PlanReadError(f"{source}: cannot be read ({type(exc).__name__}: {exc})") from exc


@contextlib.contextmanager
def lenient_reading() -> Iterator[None]:
    """Ignore pydicom's value validation (over-long DS strings...) inside the block, then restore it."""
    settings = pydicom_config.settings
    previous = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        yield
    finally:
        settings.reading_validation_mode = previous


def segment_rotation_deg(start_deg: float, end_deg: float, direction: str) -> float:
    """Signed rotation (positive = CW) from ``start_deg`` to ``end_deg`` turning in ``direction``.

    PS3.3 C.8.8.14.8: at most 360 degrees per segment; with CW or CC an unchanged angle is a full turn
    (5 -> 5 CW = 360); with NONE the angle does not change (0 is returned).
    """
    if direction == "CW":
        delta = (end_deg - start_deg) % 360.0
        return 360.0 if math.isclose(delta, 0.0, abs_tol=1e-9) else delta
    if direction == "CC":
        delta = (start_deg - end_deg) % 360.0
        return -360.0 if math.isclose(delta, 0.0, abs_tol=1e-9) else -delta
    return 0.0


def classify_technique(
    beam_type: str,
    cumulative_meterset_mu: np.ndarray,
    gantry_rotation_deg: np.ndarray,
    mlc_mm: np.ndarray | None,
) -> BeamTechnique:
    """Classify a beam from its motion (see :class:`BeamTechnique`).

    ``gantry_rotation_deg`` holds the signed rotation of each segment (n - 1 values). The gantry moving
    makes an arc: ARC without MLC, CONFORMAL_ARC when the MLC is fixed or the MU per degree is constant,
    VMAT when the MLC moves and the MU per degree varies. A fixed gantry: SLIDING_WINDOW when leaves
    move while the meterset runs, STEP_AND_SHOOT when they move only with the beam held, else STATIC.
    ``beam_type`` breaks no tie today; it is kept for callers that want to log it.
    """
    del beam_type
    d_mu = np.diff(cumulative_meterset_mu)
    rotating = np.abs(gantry_rotation_deg) > ANGLE_TOLERANCE_DEG
    if mlc_mm is not None and mlc_mm.shape[0] > 1:
        leaf_move = np.abs(np.diff(mlc_mm, axis=0)).reshape(mlc_mm.shape[0] - 1, -1).max(axis=1)
        mlc_moves = leaf_move > POSITION_TOLERANCE_MM
    else:
        mlc_moves = np.zeros(d_mu.shape, dtype=bool)
    if rotating.any():
        if mlc_mm is None:
            return BeamTechnique.ARC
        if not mlc_moves.any():
            return BeamTechnique.CONFORMAL_ARC
        mu_per_deg = d_mu[rotating] / np.abs(gantry_rotation_deg[rotating])
        mean = float(np.mean(mu_per_deg))
        if mean > 0 and float(np.ptp(mu_per_deg)) <= CONSTANT_MU_PER_DEG_TOLERANCE * mean:
            return BeamTechnique.CONFORMAL_ARC
        return BeamTechnique.VMAT
    beam_on = d_mu > 0
    if (mlc_moves & beam_on).any():
        return BeamTechnique.SLIDING_WINDOW
    if mlc_moves.any():
        return BeamTechnique.STEP_AND_SHOOT
    return BeamTechnique.STATIC


# --------------------------------------------------------------------------------------------------
# internals


def _sop_class_uid(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return str(uid).strip() if uid else ""


def _describe_sop_class(ds: Dataset) -> str:
    uid = _sop_class_uid(ds)
    if not uid:
        return "no SOP Class UID (0008,0016); is this a DICOM object at all?"
    name = UID(uid).name
    label = f"{name} ({uid})" if name != uid else uid
    if uid == RT_PLAN_SOP_CLASS:
        return f"SOP Class UID is {label} but it has neither a Beam Sequence (300A,00B0) nor brachy setups"
    return f"SOP Class UID is {label}"


def attribute_name(keyword: str) -> str:
    """``"Gantry Angle (300A,011E)"`` for ``"GantryAngle"``: how messages name an attribute."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{dictionary_description(tag)} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def read_error(place: str, keyword: str | None, problem: str) -> PlanReadError:
    """``place: Attribute Name (gggg,eeee): problem``, the form of every plan reading error."""
    what = f"{attribute_name(keyword)}: " if keyword else ""
    return PlanReadError(f"{place}: {what}{problem}")


@dataclass(frozen=True, slots=True)
class _Where:
    """Where we are in the plan, for error messages."""

    source: str
    beam_number: int | None = None
    beam_name: str = ""
    control_point: int | None = None

    def at_cp(self, index: int) -> _Where:
        return _Where(self.source, self.beam_number, self.beam_name, index)

    def text(self) -> str:
        parts = [self.source]
        if self.beam_number is not None:
            parts.append(f"beam {self.beam_number} '{self.beam_name}'")
        if self.control_point is not None:
            parts.append(f"control point {self.control_point}")
        return ", ".join(parts)

    def error(self, keyword: str | None, problem: str) -> PlanReadError:
        return read_error(self.text(), keyword, problem)


_TAGS: dict[str, int] = {}


def _tag(keyword: str) -> int:
    """The tag of ``keyword`` (a dict lookup once known: the control-point loop asks ~20 000 times)."""
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            raise KeyError(keyword)
        tag = _TAGS[keyword] = int(found)
    return tag


def _raw_value(item: Dataset, keyword: str) -> object | None:
    if keyword not in item:
        return None
    value = item[keyword].value
    if value is None or value == "" or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    return value


def _get_str(item: Dataset, keyword: str, default: str = "") -> str:
    value = _raw_value(item, keyword)
    if value is None:
        return default
    if isinstance(value, (MultiValue, list, tuple)):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _get_float(item: Dataset, keyword: str, where: _Where) -> float | None:
    numbers = _raw_ds_numbers(item, keyword, where, single=True)
    if numbers is not None:
        if len(numbers) != 1:
            raise where.error(keyword, f"expected one value, found {len(numbers)}")
        return numbers[0]
    value = _raw_value(item, keyword)
    if value is None:
        return None
    if isinstance(value, (MultiValue, list, tuple)):
        if len(value) != 1:
            raise where.error(keyword, f"expected one value, found {len(value)}")
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise where.error(keyword, f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise where.error(keyword, f"not a finite number: {value!r}")
    return number


def _get_int(item: Dataset, keyword: str, where: _Where) -> int | None:
    number = _get_float(item, keyword, where)
    if number is None:
        return None
    if number != int(number):
        raise where.error(keyword, f"not an integer: {number!r}")
    return int(number)


def _raw_ds_numbers(
    item: Dataset, keyword: str, where: _Where, *, single: bool = False
) -> list[float] | None:
    """The numbers of a still-encoded DS element, without one DSfloat object per number.

    None when the element is absent, empty, or already decoded (then the normal path reads it).
    """
    tag = _tag(keyword)
    if tag not in item:
        return None
    element = item.get_item(tag)
    if not isinstance(element, RawDataElement) or element.VR not in ("DS", None) or element.value is None:
        return None
    if element.VR is None and dictionary_VR(tag) != "DS":
        return None
    return _encoded_numbers(element.value, keyword, where, single=single)


def _one_number(value: bytes, keyword: str, where: _Where) -> float | None:
    """The single number of an encoded DS/IS value (None when blank)."""
    numbers = _encoded_numbers(value, keyword, where, single=True)
    if numbers is None:
        return None
    if len(numbers) != 1:
        raise where.error(keyword, f"expected one value, found {len(numbers)}")
    return numbers[0]


def _encoded_numbers(value: bytes, keyword: str, where: _Where, *, single: bool) -> list[float] | None:
    """The numbers of an encoded DS/IS value (None when blank); an error naming ``keyword`` if not numbers."""
    try:
        numbers = list(map(float, value.split(b"\\")))
    except ValueError:
        if not value.strip(b" \x00"):
            return None
        text = value.decode("ascii", errors="replace").strip(" \x00")[:80]
        problem = f"not a number: {text!r}" if single else f"not numbers: {text.split(chr(92))!r}"
        raise where.error(keyword, problem) from None
    if not all(map(math.isfinite, numbers)):
        problem = (
            f"not a finite number: {numbers[0]!r}"
            if single
            else "contains a value that is not a finite number"
        )
        raise where.error(keyword, problem)
    return numbers


def _get_floats(item: Dataset, keyword: str, where: _Where) -> list[float] | None:
    numbers = _raw_ds_numbers(item, keyword, where)
    if numbers is not None:
        return numbers
    value = _raw_value(item, keyword)
    if value is None:
        return None
    values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise where.error(keyword, f"not numbers: {values!r}") from None
    if not all(math.isfinite(n) for n in numbers):
        raise where.error(keyword, "contains a value that is not a finite number")
    return numbers


def plan_identity(ds: Dataset, source: str) -> PlanIdentity:
    """Plan, patient and study identity of any RT Plan (linac or brachy), copied into records."""
    return PlanIdentity(
        sop_class_uid=_sop_class_uid(ds),
        sop_instance_uid=_get_str(ds, "SOPInstanceUID"),
        label=_get_str(ds, "RTPlanLabel"),
        name=_get_str(ds, "RTPlanName"),
        approval_status=_get_str(ds, "ApprovalStatus").upper(),
        source=source,
        patient=PatientStudy(
            patient_name=_get_str(ds, "PatientName"),
            patient_id=_get_str(ds, "PatientID"),
            patient_birth_date=_get_str(ds, "PatientBirthDate"),
            patient_sex=_get_str(ds, "PatientSex"),
            study_instance_uid=_get_str(ds, "StudyInstanceUID"),
            study_id=_get_str(ds, "StudyID"),
            study_date=_get_str(ds, "StudyDate"),
            study_time=_get_str(ds, "StudyTime"),
            referring_physician_name=_get_str(ds, "ReferringPhysicianName"),
            accession_number=_get_str(ds, "AccessionNumber"),
            frame_of_reference_uid=_get_str(ds, "FrameOfReferenceUID") or None,
        ),
    )


def _read_linac_plan(ds: Dataset, source: str) -> LinacPlan:
    where = _Where(source)
    identity = plan_identity(ds, source)
    beam_items = list(ds.get("BeamSequence") or [])
    if not beam_items:
        raise where.error("BeamSequence", "empty: the plan has no beams")
    fraction_groups = _read_fraction_groups(ds, where)

    beam_numbers: list[int] = []
    for item in beam_items:
        number = _get_int(item, "BeamNumber", where)
        if number is None:
            raise where.error("BeamNumber", f"missing in Beam Sequence item {len(beam_numbers) + 1}")
        if number in beam_numbers:
            raise where.error("BeamNumber", f"beam number {number} is used twice")
        beam_numbers.append(number)
    for group in fraction_groups:
        for number in group.beam_metersets_mu:
            if number not in beam_numbers:
                raise where.error(
                    "ReferencedBeamNumber",
                    f"fraction group {group.number} references beam {number},"
                    " which is not in the Beam Sequence",
                )

    beams = tuple(_read_beam(item, fraction_groups, where) for item in beam_items)
    return LinacPlan(
        identity=identity,
        fraction_groups=fraction_groups,
        beams=beams,
        patient_position=_patient_position(ds, beam_items, where),
    )


def _read_fraction_groups(ds: Dataset, where: _Where) -> tuple[FractionGroup, ...]:
    groups = []
    for index, item in enumerate(ds.get("FractionGroupSequence") or [], start=1):
        number = _get_int(item, "FractionGroupNumber", where)
        metersets: dict[int, float] = {}
        for ref in item.get("ReferencedBeamSequence") or []:
            beam_number = _get_int(ref, "ReferencedBeamNumber", where)
            if beam_number is None:
                raise where.error("ReferencedBeamNumber", f"missing in fraction group {number or index}")
            meterset = _get_float(ref, "BeamMeterset", where)
            if meterset is not None:
                if meterset < 0:
                    raise where.error("BeamMeterset", f"beam {beam_number}: negative meterset {meterset}")
                metersets[beam_number] = meterset
        groups.append(
            FractionGroup(
                number=number if number is not None else index,
                fractions_planned=_get_int(item, "NumberOfFractionsPlanned", where) or 0,
                beam_metersets_mu=metersets,
            )
        )
    return tuple(groups)


def _patient_position(ds: Dataset, beam_items: list[Dataset], where: _Where) -> str:
    setups = list(ds.get("PatientSetupSequence") or [])
    if not setups:
        return ""
    wanted = _get_int(beam_items[0], "ReferencedPatientSetupNumber", where)
    for setup in setups:
        if wanted is not None and _get_int(setup, "PatientSetupNumber", where) == wanted:
            return _get_str(setup, "PatientPosition")
    return _get_str(setups[0], "PatientPosition")


def _fluence_mode_id(beam: Dataset) -> str | None:
    for item in beam.get("PrimaryFluenceModeSequence") or []:
        if _get_str(item, "FluenceMode").upper() == "NON_STANDARD":
            return _get_str(item, "FluenceModeID") or "NON_STANDARD"
    return None


def _read_devices(
    beam: Dataset, where: _Where
) -> tuple[dict[str, int], tuple[float, ...] | None, str | None]:
    pair_counts: dict[str, int] = {}
    boundaries: tuple[float, ...] | None = None
    mlc_type: str | None = None
    for item in beam.get("BeamLimitingDeviceSequence") or []:
        device = _get_str(item, "RTBeamLimitingDeviceType").upper()
        if not device:
            raise where.error("RTBeamLimitingDeviceType", "missing in Beam Limiting Device Sequence")
        if device in pair_counts:
            raise where.error("RTBeamLimitingDeviceType", f"device {device} is declared twice")
        pairs = _get_int(item, "NumberOfLeafJawPairs", where)
        if pairs is None or pairs < 1:
            raise where.error("NumberOfLeafJawPairs", f"missing or invalid for device {device}")
        if device not in (*JAW_X_TYPES, *JAW_Y_TYPES, *MLC_TYPES):
            raise where.error("RTBeamLimitingDeviceType", f"unknown device type {device!r}")
        if device in MLC_TYPES:
            if mlc_type is not None:
                raise where.error("RTBeamLimitingDeviceType", f"two MLCs declared ({mlc_type} and {device})")
            mlc_type = device
            values = _get_floats(item, "LeafPositionBoundaries", where)
            if values is None or len(values) != pairs + 1:
                found = 0 if values is None else len(values)
                raise where.error(
                    "LeafPositionBoundaries",
                    f"{device} with {pairs} pairs needs {pairs + 1} values, found {found}",
                )
            if any(b <= a for a, b in itertools.pairwise(values)):
                raise where.error("LeafPositionBoundaries", f"{device} boundaries are not increasing")
            boundaries = tuple(values)
        elif pairs != 1:
            raise where.error("NumberOfLeafJawPairs", f"jaw device {device} must have 1 pair, found {pairs}")
        pair_counts[device] = pairs
    for family in (JAW_X_TYPES, JAW_Y_TYPES):
        both = [d for d in family if d in pair_counts]
        if len(both) > 1:
            raise where.error("RTBeamLimitingDeviceType", f"both {both[0]} and {both[1]} are declared")
    return pair_counts, boundaries, mlc_type


def _read_wedges(beam: Dataset, where: _Where) -> tuple[WedgeSpec, ...]:
    wedges = []
    for index, item in enumerate(beam.get("WedgeSequence") or [], start=1):
        number = _get_int(item, "WedgeNumber", where)
        wedges.append(
            WedgeSpec(
                number=number if number is not None else index,
                wedge_id=_get_str(item, "WedgeID"),
                wedge_type=_get_str(item, "WedgeType").upper(),
                angle_deg=_get_float(item, "WedgeAngle", where) or 0.0,
                orientation_deg=_get_float(item, "WedgeOrientation", where) or 0.0,
            )
        )
    numbers = [w.number for w in wedges]
    if len(set(numbers)) != len(numbers):
        raise where.error("WedgeNumber", f"wedge numbers repeat: {numbers}")
    return tuple(wedges)


# Per-control-point scalar values: (keyword, required at control point 0, fill value when absent).
_SCALARS: tuple[tuple[str, bool, float], ...] = (
    ("NominalBeamEnergy", True, math.nan),
    ("DoseRateSet", False, math.nan),
    ("GantryAngle", True, math.nan),
    ("BeamLimitingDeviceAngle", True, math.nan),
    ("PatientSupportAngle", True, math.nan),
    ("TableTopVerticalPosition", False, math.nan),
    ("TableTopLongitudinalPosition", False, math.nan),
    ("TableTopLateralPosition", False, math.nan),
)
_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("GantryRotationDirection", "GantryAngle"),
    ("BeamLimitingDeviceRotationDirection", "BeamLimitingDeviceAngle"),
    ("PatientSupportRotationDirection", "PatientSupportAngle"),
)


def _control_point_items(beam: Dataset, where: _Where) -> list[Dataset] | list[RawItem]:
    """The beam's control points: parsed straight from the bytes when still encoded (fast), else as read."""
    element = beam.get_item(CONTROL_POINT_SEQUENCE_TAG) if CONTROL_POINT_SEQUENCE_TAG in beam else None
    if isinstance(element, RawDataElement) and element.value is not None and element.is_little_endian:
        implicit = element.is_implicit_VR or element.VR == "UN"  # a UN sequence's value is implicit VR
        try:
            return parse_items(element.value, implicit)
        except DicomBytesError as exc:
            complete = len(complete_items(element.value, implicit))
            declared = _get_int(beam, "NumberOfControlPoints", where)
            raise where.error(
                "ControlPointSequence" if declared is None else "NumberOfControlPoints",
                f"{'' if declared is None else f'says {declared} but '}the Control Point Sequence has"
                f" {complete} complete item(s) and then cannot be read ({exc}; truncated or corrupt file)",
            ) from None
    return list(beam.get("ControlPointSequence") or [])


def _read_beam(item: Dataset, fraction_groups: tuple[FractionGroup, ...], plan_where: _Where) -> LinacBeam:
    number = _get_int(item, "BeamNumber", plan_where)
    assert number is not None  # checked by the caller
    name = _get_str(item, "BeamName")
    where = _Where(plan_where.source, number, name)

    radiation_type = _get_str(item, "RadiationType").upper()
    if not radiation_type:
        raise where.error("RadiationType", "missing")
    pair_counts, boundaries, mlc_type = _read_devices(item, where)
    wedges = _read_wedges(item, where)

    cp_items = _control_point_items(item, where)
    declared_cps = _get_int(item, "NumberOfControlPoints", where)
    if declared_cps is not None and declared_cps != len(cp_items):
        raise where.error(
            "NumberOfControlPoints",
            f"says {declared_cps} but the Control Point Sequence has {len(cp_items)} item(s)"
            " (truncated or inconsistent file)",
        )
    if len(cp_items) < 2:
        raise where.error(
            "ControlPointSequence", f"a beam needs at least 2 control points, found {len(cp_items)}"
        )

    meterset_mu = 0.0
    has_meterset = False
    for group in fraction_groups:
        if number in group.beam_metersets_mu:
            meterset_mu = group.beam_metersets_mu[number]
            has_meterset = True
            break
    if not has_meterset:
        log.warning("%s: no Beam Meterset in any fraction group; meterset set to 0", where.text())

    cps = _read_control_points(cp_items, pair_counts, mlc_type, wedges, where)
    final_cmw = _get_float(item, "FinalCumulativeMetersetWeight", where)
    cmw = cps.cmw
    if final_cmw is None:
        final_cmw = float(cmw[-1])
    if final_cmw <= 0:
        if has_meterset and meterset_mu > 0:
            raise where.error(
                "FinalCumulativeMetersetWeight", f"{final_cmw} with a Beam Meterset of {meterset_mu}"
            )
        cumulative_mu = np.zeros_like(cmw)
    else:
        last = float(cmw[-1])
        if abs(last - final_cmw) > FINAL_CMW_RELATIVE_TOLERANCE * final_cmw:
            raise where.at_cp(len(cmw) - 1).error(
                "CumulativeMetersetWeight",
                f"{last} at the last control point differs from Final Cumulative Meterset Weight {final_cmw}",
            )
        cumulative_mu = meterset_mu * cmw / final_cmw

    energies = cps.scalars["NominalBeamEnergy"]
    changed = np.flatnonzero(np.abs(energies - energies[0]) > 1e-6)
    if changed.size:
        i = int(changed[0])
        raise where.at_cp(i).error(
            "NominalBeamEnergy",
            f"{energies[i]:g} differs from {energies[0]:g} at control point 0; energy changes within a beam"
            " are not supported",
        )

    gantry = cps.scalars["GantryAngle"]
    rotation = np.array(
        [
            segment_rotation_deg(gantry[i], gantry[i + 1], cps.directions["GantryRotationDirection"][i])
            for i in range(len(gantry) - 1)
        ]
    )
    beam_type = _get_str(item, "BeamType").upper()
    technique = classify_technique(beam_type, cumulative_mu, rotation, cps.mlc)

    jaw_x_type = next((d for d in JAW_X_TYPES if d in pair_counts), None)
    jaw_y_type = next((d for d in JAW_Y_TYPES if d in pair_counts), None)
    applicators = list(item.get("ApplicatorSequence") or [])
    applicator = applicators[0] if applicators else None
    sad = _get_float(item, "SourceAxisDistance", where)

    return LinacBeam(
        number=number,
        name=name,
        description=_get_str(item, "BeamDescription"),
        beam_type=beam_type,
        radiation_type=radiation_type,
        technique=technique,
        treatment_machine_name=_get_str(item, "TreatmentMachineName"),
        primary_dosimeter_unit=_get_str(item, "PrimaryDosimeterUnit", "MU").upper(),
        source_axis_distance_mm=sad if sad is not None else math.nan,
        treatment_delivery_type=_get_str(item, "TreatmentDeliveryType", "TREATMENT").upper(),
        beam_meterset_mu=meterset_mu,
        final_cumulative_meterset_weight=final_cmw,
        nominal_energy_mev=float(energies[0]),
        fluence_mode_id=_fluence_mode_id(item),
        device_pair_counts=pair_counts,
        mlc_device_type=mlc_type,
        mlc_leaf_boundaries_mm=boundaries,
        wedges=wedges,
        applicator_id=(_get_str(applicator, "ApplicatorID") or None) if applicator is not None else None,
        applicator_type=(_get_str(applicator, "ApplicatorType") or None) if applicator is not None else None,
        number_of_compensators=_get_int(item, "NumberOfCompensators", where) or 0,
        number_of_boli=_get_int(item, "NumberOfBoli", where) or 0,
        number_of_blocks=_get_int(item, "NumberOfBlocks", where) or 0,
        referenced_patient_setup_number=_get_int(item, "ReferencedPatientSetupNumber", where),
        referenced_tolerance_table_number=_get_int(item, "ReferencedToleranceTableNumber", where),
        control_point_indices=cps.indices,
        cumulative_meterset_weight=cmw,
        cumulative_meterset_mu=cumulative_mu,
        dose_rate_set_mu_per_min=cps.scalars["DoseRateSet"],
        gantry_deg=gantry,
        gantry_direction=cps.directions["GantryRotationDirection"],
        collimator_deg=cps.scalars["BeamLimitingDeviceAngle"],
        collimator_direction=cps.directions["BeamLimitingDeviceRotationDirection"],
        couch_deg=cps.scalars["PatientSupportAngle"],
        couch_direction=cps.directions["PatientSupportRotationDirection"],
        table_top_vertical_mm=cps.scalars["TableTopVerticalPosition"],
        table_top_longitudinal_mm=cps.scalars["TableTopLongitudinalPosition"],
        table_top_lateral_mm=cps.scalars["TableTopLateralPosition"],
        jaw_x_mm=cps.devices.get(jaw_x_type) if jaw_x_type else None,
        jaw_x_device_type=jaw_x_type,
        jaw_y_mm=cps.devices.get(jaw_y_type) if jaw_y_type else None,
        jaw_y_device_type=jaw_y_type,
        mlc_mm=cps.mlc,
        wedge_in=cps.wedge_in,
    )


@dataclass(frozen=True, slots=True)
class _ControlPoints:
    indices: np.ndarray
    cmw: np.ndarray
    scalars: dict[str, np.ndarray]
    directions: dict[str, tuple[str, ...]]
    devices: dict[str, np.ndarray]  # jaws (n, 2)
    mlc: np.ndarray | None  # (n, 2, pairs)
    wedge_in: np.ndarray  # (n, wedges) bool


def _read_control_points(
    cp_items: list[Dataset] | list[RawItem],
    pair_counts: dict[str, int],
    mlc_type: str | None,
    wedges: tuple[WedgeSpec, ...],
    where: _Where,
) -> _ControlPoints:
    """Read the control points column by column (one attribute across all points), carrying forward.

    Works on still-encoded items (:class:`RawItem`, the fast path); Datasets are converted first.
    """
    items = [item if type(item) is RawItem else _as_raw_item(item) for item in cp_items]
    n = len(items)

    def column(keyword: str) -> list[object]:
        tag = _tag(keyword)
        return [item.get(tag) for item in items]

    given = _cp_numbers(column("ControlPointIndex"), "ControlPointIndex", where)
    indices = np.arange(n)
    for i, value in given.items():
        if value != int(value):
            raise where.at_cp(i).error("ControlPointIndex", f"not an integer: {value!r}")
        indices[i] = int(value)

    weights = _cp_numbers(column("CumulativeMetersetWeight"), "CumulativeMetersetWeight", where)
    if len(weights) != n:
        first_missing = next(i for i in range(n) if i not in weights)
        raise where.at_cp(first_missing).error("CumulativeMetersetWeight", "missing")
    cmw = np.fromiter(weights.values(), dtype=float, count=n)
    negative = np.flatnonzero(cmw < 0)
    if negative.size:
        i = int(negative[0])
        raise where.at_cp(i).error("CumulativeMetersetWeight", f"negative ({cmw[i]:g})")
    decreasing = np.flatnonzero(np.diff(cmw) < 0)
    if decreasing.size:
        i = int(decreasing[0]) + 1
        raise where.at_cp(i).error(
            "CumulativeMetersetWeight",
            f"decreases from {cmw[i - 1]:g} at control point {i - 1} to {cmw[i]:g}",
        )

    scalars = {}
    for keyword, required, fill in _SCALARS:
        found = _cp_numbers(column(keyword), keyword, where)
        if required and 0 not in found:
            raise where.at_cp(0).error(keyword, "missing at the first control point (PS3.3 C.8.8.14.5)")
        scalars[keyword] = _carried_forward(found, n, fill)

    directions: dict[str, list[str]] = {}
    for keyword, _angle in _DIRECTIONS:
        current = "NONE"
        carried = []
        for i, value in enumerate(column(keyword)):
            text = _text(value).upper()
            if text:
                if text not in ROTATION_DIRECTIONS:
                    raise where.at_cp(i).error(keyword, f"{text!r} is not CW, CC or NONE")
                current = text
            carried.append(current)
        directions[keyword] = carried

    devices = _cp_device_positions(items, pair_counts, where)
    wedge_in = _cp_wedges(items, wedges, where)

    for keyword, angle_keyword in _DIRECTIONS:
        angles = scalars[angle_keyword]
        turn_deg = (np.diff(angles) + 180.0) % 360.0 - 180.0  # 0 -> 360 is no turn
        still = np.array([d == "NONE" for d in directions[keyword][:-1]], dtype=bool)
        moving = np.flatnonzero(still & (np.abs(turn_deg) > ANGLE_TOLERANCE_DEG))
        if moving.size:
            i = int(moving[0])
            raise where.at_cp(i).error(
                keyword,
                f"NONE, but {attribute_name(angle_keyword)} changes from {angles[i]:g}"
                f" to {angles[i + 1]:g} at control point {i + 1}",
            )

    jaws = {d: a for d, a in devices.items() if d not in MLC_TYPES}
    mlc = None
    if mlc_type is not None:
        pairs = pair_counts[mlc_type]
        mlc = devices[mlc_type].reshape(n, 2, pairs)
    return _ControlPoints(
        indices=indices,
        cmw=cmw,
        scalars=scalars,
        directions={k: tuple(v) for k, v in directions.items()},
        devices=jaws,
        mlc=mlc,
        wedge_in=wedge_in,
    )


def _text(value: object) -> str:
    """An encoded text value as str (blank and absent give "")."""
    return value.decode("latin-1").strip(" \x00") if type(value) is bytes else ""


def _cp_numbers(values: list[object], keyword: str, where: _Where) -> dict[int, float]:
    """Control point index -> the one number ``keyword`` gives there (absent and blank left out)."""
    found: dict[int, float] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        if type(value) is not bytes:
            raise where.at_cp(i).error(keyword, "a sequence where a number belongs")
        number = _one_number(value, keyword, where.at_cp(i))
        if number is not None:
            found[i] = number
    return found


def _cp_integer(value: object, keyword: str, where: _Where) -> int | None:
    """The integer of an encoded IS value in a control point item (None when absent or blank)."""
    number = _one_number(value, keyword, where) if type(value) is bytes else None
    if number is None:
        return None
    if number != int(number):
        raise where.error(keyword, f"not an integer: {number!r}")
    return int(number)


def _carried_forward(found: dict[int, float], n: int, fill: float) -> np.ndarray:
    """Per control point, the last value given at or before it (``fill`` before the first)."""
    out = np.full(n, fill)
    if found:
        given_at = np.fromiter(found.keys(), dtype=int, count=len(found))
        values = np.fromiter(found.values(), dtype=float, count=len(found))
        marker = np.full(n, -1)
        marker[given_at] = np.arange(len(found))
        last = np.maximum.accumulate(marker)
        out[last >= 0] = values[last[last >= 0]]
    return out


def _cp_device_positions(
    items: list[RawItem], pair_counts: dict[str, int], where: _Where
) -> dict[str, np.ndarray]:
    """Per beam limiting device, its positions at every control point, (n, 2 x pairs), carried forward.

    The values a device is given at all its control points are parsed in one numpy call; only a value
    that fails is parsed again point by point, to name its control point.
    """
    sequence_tag, type_tag = _tag("BeamLimitingDevicePositionSequence"), _tag("RTBeamLimitingDeviceType")
    positions_tag = _tag("LeafJawPositions")
    given: dict[str, list[tuple[int, bytes]]] = {device: [] for device in pair_counts}
    for i, item in enumerate(items):
        sequence = item.get(sequence_tag)
        if not sequence:
            continue
        if type(sequence) is not list:
            raise where.at_cp(i).error("BeamLimitingDevicePositionSequence", "not a sequence")
        seen: set[str] = set()
        for position in sequence:
            device = _text(position.get(type_tag)).upper()
            if device not in pair_counts:
                raise where.at_cp(i).error(
                    "RTBeamLimitingDeviceType",
                    f"positions given for {device or '(blank)'}, which the Beam Limiting Device Sequence"
                    " (300A,00B6) does not declare",
                )
            if device in seen:
                raise where.at_cp(i).error("RTBeamLimitingDeviceType", f"positions for {device} given twice")
            seen.add(device)
            value = position.get(positions_tag)
            given[device].append((i, value if type(value) is bytes else b""))
    n = len(items)
    positions = {}
    for device, values in given.items():
        if not values or values[0][0] != 0:
            raise where.at_cp(0).error(
                "LeafJawPositions", f"no positions for {device} at the first control point (PS3.3 C.8.8.14.5)"
            )
        expected = 2 * pair_counts[device]
        try:
            parsed = np.array(b"\\".join(v for _, v in values).split(b"\\"), dtype=float)
            ok = parsed.size == expected * len(values) and bool(np.all(np.isfinite(parsed)))
        except ValueError:
            ok = False
        if not ok:  # find and name the control point that is wrong
            for i, value in values:
                numbers = _encoded_numbers(value, "LeafJawPositions", where.at_cp(i), single=False)
                if numbers is None or len(numbers) != expected:
                    raise where.at_cp(i).error(
                        "LeafJawPositions",
                        f"{device} needs {expected} values ({pair_counts[device]} pairs),"
                        f" found {0 if numbers is None else len(numbers)}",
                    )
            raise where.error("LeafJawPositions", f"{device}: values that cannot be read")
        given_at = np.full(n, -1)
        given_at[[i for i, _ in values]] = np.arange(len(values))
        positions[device] = parsed.reshape(len(values), expected)[np.maximum.accumulate(given_at)]
    return positions


def _cp_wedges(items: list[RawItem], wedges: tuple[WedgeSpec, ...], where: _Where) -> np.ndarray:
    """(n, wedges) True where the wedge is IN at the control point (carried forward)."""
    numbers = [w.number for w in wedges]
    wedge_in = np.zeros((len(items), len(wedges)), dtype=bool)
    sequence_tag = _tag("WedgePositionSequence")
    number_tag, state_tag = _tag("ReferencedWedgeNumber"), _tag("WedgePosition")
    current: dict[int, bool] = {}
    for i, item in enumerate(items):
        sequence = item.get(sequence_tag)
        if sequence and type(sequence) is list:
            here = where.at_cp(i)
            for position in sequence:
                ref = _cp_integer(position.get(number_tag), "ReferencedWedgeNumber", here)
                if ref not in numbers:
                    raise here.error(
                        "ReferencedWedgeNumber", f"wedge {ref} is not in the Wedge Sequence (300A,00D1)"
                    )
                state = _text(position.get(state_tag)).upper()
                if state not in ("IN", "OUT"):
                    raise here.error(
                        "WedgePosition", f"{state or '(blank)'} for wedge {ref} is not IN or OUT"
                    )
                current[ref] = state == "IN"
        for column, number in enumerate(numbers):
            if number not in current:
                raise where.at_cp(i).error(
                    "WedgePosition", f"no position for wedge {number} at the first control point"
                )
            wedge_in[i, column] = current[number]
    return wedge_in


def _as_raw_item(ds: Dataset) -> RawItem:
    """A Dataset's elements as a :class:`RawItem` (values as text bytes), for the control-point reader."""
    item = RawItem()
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.value is not None and not _is_sequence_element(raw):
            item[int(tag)] = raw.value
            continue
        element = ds[tag]
        value = element.value
        if element.VR == "SQ":
            item[int(tag)] = [_as_raw_item(sub) for sub in value or ()]
        elif value is None:
            item[int(tag)] = b""
        elif isinstance(value, (MultiValue, list, tuple)):
            item[int(tag)] = "\\".join(str(v) for v in value).encode("latin-1", "replace")
        else:
            item[int(tag)] = str(value).encode("latin-1", "replace")
    return item


def _is_sequence_element(raw: RawDataElement) -> bool:
    if raw.VR is not None:
        return raw.VR == "SQ"
    try:
        return dictionary_VR(raw.tag) == "SQ"
    except KeyError:
        return False
