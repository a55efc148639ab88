"""Typed brachytherapy plan objects (RT Plan with the RT Brachy Application Setups module, PS3.3 C.8.8.15).

:mod:`simulators.plans.brachy_reader` builds them from DICOM; the afterloader's capability check, program
builder and record writer use them. Per-control-point values of a channel are numpy arrays (one row per
Brachy Control Point). Times are in seconds, positions in mm, source strength as Reference Air Kerma Rate
in µGy/h at 1 m.

The DICOM rules carried here (PS3.3 C.8.8.15.6/.7): the cumulative time at a control point is
``Channel Total Time x Cumulative Time Weight / Final Cumulative Time Weight``; a dwell is two control
points at one position (the first with the earlier, the second with the later weight); a weight that grows
while the position changes is time spent moving. For PDR the control points describe **one pulse** and
Channel Total Time is the pulse's time in that channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from simulators.plans.model import PlanIdentity

POSITION_TOLERANCE_MM = 0.01  # two control points closer than this are at the same position
TREATMENT = "TREATMENT"
CONTINUATION = "CONTINUATION"


@dataclass(frozen=True, slots=True)
class BrachySource:
    """One Source Sequence item: the source the plan's dwell times were computed for."""

    number: int
    source_type: str
    manufacturer: str
    isotope: str
    half_life_days: float | None
    reference_air_kerma_rate_ugy_per_h: float | None
    strength_reference_datetime: datetime | None
    model_id: str = ""
    strength_units: str = ""


@dataclass(frozen=True, slots=True)
class Dwell:
    """One stop of the source: plan control points ``start_row``/``end_row`` of its channel."""

    start_row: int
    end_row: int
    position_mm: float
    time_s: float  # planned (before decay correction)


@dataclass(frozen=True, slots=True)
class BrachyChannel:
    """One Channel Sequence item with its Brachy Control Points as arrays (``n`` control points)."""

    number: int
    setup_number: int
    length_mm: float | None
    total_time_s: float
    source_movement_type: str  # STEPWISE, FIXED, OSCILLATING, UNIDIRECTIONAL
    source_number: int
    final_cumulative_time_weight: float
    control_point_indices: np.ndarray  # (n,) int
    cumulative_time_weights: np.ndarray  # (n,)
    relative_positions_mm: np.ndarray  # (n,) Control Point Relative Position
    positions_3d_mm: np.ndarray | None = None  # (n, 3) when every control point gives one
    number_of_pulses: int | None = None
    pulse_repetition_interval_s: float | None = None
    afterloader_channel_id: str = ""
    source_applicator_number: int | None = None
    source_applicator_id: str = ""
    source_applicator_type: str = ""
    source_applicator_length_mm: float | None = None
    transfer_tube_number: int | None = None
    transfer_tube_length_mm: float | None = None
    step_size_mm: float | None = None  # Source Applicator Step Size (300A,02A0), when given

    @property
    def control_point_count(self) -> int:
        return int(self.cumulative_time_weights.shape[0])

    @property
    def cumulative_time_s(self) -> np.ndarray:
        """Planned cumulative time at each control point: total time x CTW / final CTW."""
        if self.final_cumulative_time_weight <= 0:
            return np.zeros_like(self.cumulative_time_weights)
        return self.total_time_s * self.cumulative_time_weights / self.final_cumulative_time_weight

    def dwells(self) -> list[Dwell]:
        """The dwells (pairs of control points at one position whose weight grows), in plan order."""
        times = self.cumulative_time_s
        positions = self.relative_positions_mm
        out = []
        for row in range(self.control_point_count - 1):
            moved = abs(float(positions[row + 1] - positions[row])) > POSITION_TOLERANCE_MM
            spent = float(times[row + 1] - times[row])
            if not moved and spent > 0:
                out.append(Dwell(row, row + 1, float(positions[row]), spent))
        return out

    @property
    def pulses(self) -> int:
        """Pulses this channel is delivered in (1 for HDR)."""
        return self.number_of_pulses if self.number_of_pulses and self.number_of_pulses > 0 else 1


@dataclass(frozen=True, slots=True)
class ApplicationSetup:
    """One Application Setup Sequence item (an applicator and its channels)."""

    number: int
    setup_type: str
    name: str
    total_reference_air_kerma: float | None
    channels: tuple[BrachyChannel, ...]


@dataclass(frozen=True, slots=True)
class BrachyFractionGroup:
    """One Fraction Group Sequence item: which application setups it delivers."""

    number: int
    fractions_planned: int
    setup_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BrachyPlan:
    """An RT Plan for a remote afterloader (HDR or PDR)."""

    identity: PlanIdentity
    technique: str  # Brachy Treatment Technique: INTRACAVITARY, INTERSTITIAL, ...
    treatment_type: str  # Brachy Treatment Type: HDR, PDR, ...
    treatment_machine_name: str
    sources: tuple[BrachySource, ...]
    setups: tuple[ApplicationSetup, ...]
    fraction_groups: tuple[BrachyFractionGroup, ...]
    patient_position: str = ""

    @property
    def channels(self) -> tuple[BrachyChannel, ...]:
        """Every channel of every application setup, in plan order."""
        return tuple(channel for setup in self.setups for channel in setup.channels)

    def channel(self, number: int) -> BrachyChannel:
        """The channel with this Channel Number (KeyError if absent)."""
        for channel in self.channels:
            if channel.number == number:
                return channel
        raise KeyError(number)

    def setup(self, number: int) -> ApplicationSetup:
        """The application setup with this number (KeyError if absent)."""
        for setup in self.setups:
            if setup.number == number:
                return setup
        raise KeyError(number)

    def source(self, number: int) -> BrachySource:
        """The source with this Source Number (KeyError if absent)."""
        for source in self.sources:
            if source.number == number:
                return source
        raise KeyError(number)

    @property
    def pulses(self) -> int:
        """Pulses of the course (the largest Number of Pulses of its channels; 1 for HDR)."""
        return max((c.pulses for c in self.channels), default=1)

    @property
    def pulse_repetition_interval_s(self) -> float | None:
        values = [c.pulse_repetition_interval_s for c in self.channels if c.pulse_repetition_interval_s]
        return max(values) if values else None


@dataclass(frozen=True, slots=True)
class ChannelWindow:
    """The part of one channel a session delivers, in Cumulative Time Weight (plan) terms."""

    start_weight: float
    end_weight: float


@dataclass(frozen=True, slots=True)
class BrachyTask:
    """What the TMS asks for one application setup in this session (Brachy Task Sequence item).

    ``channel_order`` is the Channel Delivery Order (None: plan order). For a CONTINUATION,
    ``continuation`` maps a channel number to the weights still to deliver in the first pulse delivered
    (``continuation_pulse``, 1-based), and ``omitted_channels`` lists channels not to deliver with the
    Reason for Channel Omission. Channels absent from ``continuation`` are delivered whole.
    """

    setup_number: int
    delivery_type: str = TREATMENT
    fraction_number: int = 1
    fraction_group_number: int = 1
    channel_order: tuple[int, ...] | None = None
    continuation: dict[int, ChannelWindow] = field(default_factory=dict)
    omitted_channels: tuple[tuple[int, str], ...] = ()
    continuation_pulse: int | None = None
    start_total_reference_air_kerma: float | None = None
    end_total_reference_air_kerma: float | None = None

    @property
    def is_continuation(self) -> bool:
        return self.delivery_type.upper() == CONTINUATION
