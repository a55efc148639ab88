"""How long machine motion takes: rest-to-rest moves and control-point segment timing.

Pure numpy, vectorised over segments and actuators (every leaf is its own actuator). No SimPy, no pydicom.

Numbers used (all from the machine model file, :mod:`machine_models.schema`):

* ``AxisLimits.max_speed_per_s`` / ``max_accel_per_s2`` for gantry, collimator, couch rotation and the
  three couch translations; ``JawModel.max_speed_mm_per_s`` / ``max_accel_mm_per_s2`` per jaw pair;
  ``MlcModel.max_leaf_speed_mm_per_s`` / ``max_leaf_accel_mm_per_s2`` for every leaf.
* ``Energy.max_dose_rate_mu_per_min`` (capped per segment by the plan's Dose Rate Set) and, for a
  ``binned`` servo, ``Energy.dose_rate_bins_mu_per_min``.

Nothing else: there is no fixed per-control-point overhead (it would make the time depend on how finely a
planning system samples the same motion).

**Rest-to-rest move** (:func:`move_time_s`): trapezoidal velocity profile, ``d/v + v/a`` when the axis
reaches ``v`` (``d >= v**2/a``), triangular ``2*sqrt(d/a)`` otherwise, ``d/v`` without a known
acceleration. A non-zero move never takes 0 s.

**Segments** (:func:`segment_timing`), the "slowest axis wins" rule of machine-models.md §1.4, for a
sequence of consecutive control-point segments through which the axes move continuously (VMAT, sliding
window, dynamic wedge, and also step-and-shoot, where the moves simply sit between beam-on segments):

1. For each actuator the signed displacements are cut into *runs*: maximal sequences of consecutive
   segments that move in the same direction. A run starts from rest (beam start, after a segment in which
   the actuator does not move, or at a reversal) and ends at rest. Its peak speed is therefore at most
   ``v_run = min(vmax, sqrt(a * D_run))`` (``D_run`` = run length), and the actuator needs
   ``|delta| / v_run`` in each segment of the run.
2. The cruise time of segment i is ``T0_i = max(t_dose_i, all actuator times)`` with
   ``t_dose_i = delta_meterset_i / rate_cap_i`` (rate cap = max dose rate, lowered by Dose Rate Set).
3. Each actuator moves at ``u = |delta| / T0_i`` in the segment. Where a run starts it first has to
   accelerate from rest, which costs ``u/(2a)`` more than moving at ``u`` all along; where a run ends it
   costs ``u/(2a)`` to stop (a reversal is a stop and a start). Speed changes without a reversal are taken
   as free (the controller blends them). The extra time of segment i is
   ``max(start penalties at its first control point) + max(stop penalties at its last control point)``
   over all actuators, and ``duration_i = T0_i + extra_i``.

For a single isolated move this gives exactly :func:`move_time_s` (``d/v + v/a`` or ``2*sqrt(d/a)``).
Splitting a segment at its midpoint (interpolated positions and meterset) leaves the runs, ``v_run`` and
``u`` unchanged and adds no start or stop, so the total time does not change (continuous servo). With a
binned servo the chosen bin is per segment, so subdivision can change the total slightly.

The dose rate is what is left over: continuous servo ``60 * delta_meterset / duration``; binned servo the
largest bin not above the cap whose ``delta_meterset / bin`` is not shorter than the time the axes need
(the segment then lasts ``delta_meterset / bin``); if even the smallest bin is too fast the servo holds the
beam and the average rate is reported. ``limiting_axis`` is the group with the largest own time (cruise
plus its own ramps), ``"dose"`` when the meterset at the capped rate is slowest, ``"none"`` when nothing
happens in the segment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DOSE = "dose"
NOTHING = "none"

#: Which DICOM rotation direction makes each IEC 61217 angle increase (PS3.3 C.8.8.14.8: the gantry is
#: viewed from the isocentre, the collimator from the source, the patient support from above; IEC angles
#: increase clockwise when viewed along the positive rotation axis).
INCREASING_DIRECTION = {"gantry": "CW", "collimator": "CC", "couch": "CC"}


def move_time_s(
    distance: np.ndarray | float,
    max_speed_per_s: float,
    max_accel_per_s2: float | None = None,
) -> np.ndarray:
    """Rest-to-rest time for moves of ``|distance|`` (trapezoidal or triangular profile).

    ``max_accel_per_s2=None`` means no acceleration is known: the time is ``|distance| / max_speed``.
    """
    if not max_speed_per_s > 0:
        raise ValueError(f"max_speed_per_s must be > 0, got {max_speed_per_s}")
    d = np.abs(np.asarray(distance, dtype=float))
    if max_accel_per_s2 is None:
        return d / max_speed_per_s
    if not max_accel_per_s2 > 0:
        raise ValueError(f"max_accel_per_s2 must be > 0 or None, got {max_accel_per_s2}")
    v, a = max_speed_per_s, max_accel_per_s2
    reaches_vmax = d >= v * v / a
    return np.where(reaches_vmax, d / v + v / a, 2.0 * np.sqrt(d / a))


def rotation_delta_deg(
    start_deg: np.ndarray | float,
    end_deg: np.ndarray | float,
    direction: Sequence[str] | str,
    increasing: str = "CW",
) -> np.ndarray:
    """Signed rotation (positive = increasing angle) from ``start_deg`` to ``end_deg`` per DICOM rules.

    ``direction`` is the rotation direction of the segment (``"CW"``, ``"CC"``, ``"NONE"``; the value of
    the control point at the segment start). ``increasing`` is the direction in which the angle grows
    (see :data:`INCREASING_DIRECTION`). An explicit direction with equal angles is a full 360° turn
    (5° -> 5° CW); ``NONE`` (or empty) takes the shorter way, which is 0 for equal angles.
    """
    start = np.asarray(start_deg, dtype=float)
    end = np.asarray(end_deg, dtype=float)
    dirs = np.broadcast_to(np.asarray(direction, dtype=object), np.broadcast(start, end).shape)
    up = np.mod(end - start, 360.0)  # [0, 360)
    down = np.mod(start - end, 360.0)
    decreasing = "CC" if increasing == "CW" else "CW"
    going_up = dirs == increasing
    going_down = dirs == decreasing
    delta = shortest_rotation_deg(start, end)
    delta = np.where(going_up, np.where(up == 0.0, 360.0, up), delta)
    return np.where(going_down, -np.where(down == 0.0, 360.0, down), delta)


def shortest_rotation_deg(start_deg: np.ndarray | float, end_deg: np.ndarray | float) -> np.ndarray:
    """Signed shortest rotation from ``start_deg`` to ``end_deg``, in [-180, 180)."""
    diff = np.asarray(end_deg, dtype=float) - np.asarray(start_deg, dtype=float)
    return np.mod(diff + 180.0, 360.0) - 180.0


@dataclass(frozen=True, slots=True)
class AxisMotion:
    """Signed per-segment displacements of one axis group and its limits.

    ``delta`` is ``(n_segments,)`` for one actuator or ``(n_segments, k)`` for ``k`` actuators with the
    same limits (jaw pair, every leaf of an MLC), in the axis unit (deg or mm). NaN means no motion.
    ``group`` names the group in results: ``"gantry"``, ``"collimator"``, ``"couch"``, ``"jaw_x"``,
    ``"jaw_y"``, ``"mlc"`` (several motions may share a group, e.g. couch rotation and translations).
    """

    group: str
    delta: np.ndarray
    max_speed_per_s: float
    max_accel_per_s2: float | None = None


@dataclass(frozen=True, slots=True)
class SegmentTiming:
    """Timing of ``n`` consecutive segments.

    ``beam_rate_per_min`` is the meterset rate the servo runs at (0 where no meterset is delivered).
    ``axis_times_s[group]`` is the time that group alone would need (cruise plus its own ramps);
    ``axis_times_s["dose"]`` the meterset at the capped rate. ``ramp_time_s`` is the part of
    ``duration_s`` spent accelerating from rest or stopping.
    """

    duration_s: np.ndarray
    beam_rate_per_min: np.ndarray
    limiting_axis: tuple[str, ...]
    axis_times_s: Mapping[str, np.ndarray]
    ramp_time_s: np.ndarray

    @property
    def total_time_s(self) -> float:
        return float(np.sum(self.duration_s))


def _actuator_times(
    delta: np.ndarray, max_speed_per_s: float, max_accel_per_s2: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per actuator and segment: cruise time, and masks of run starts and run ends. ``delta`` (n, k)."""
    n = delta.shape[0]
    dist = np.abs(delta)
    sign = np.sign(delta)
    moving = sign != 0
    prev_sign = np.vstack([np.zeros((1, delta.shape[1])), sign[:-1]])
    next_sign = np.vstack([sign[1:], np.zeros((1, delta.shape[1]))])
    run_start = moving & (prev_sign != sign)
    run_end = moving & (next_sign != sign)
    if max_accel_per_s2 is None:
        speed = np.full(delta.shape, float(max_speed_per_s))
    else:
        # Length of the run each segment belongs to: cumulative distance between its start and end.
        idx = np.arange(n)[:, None]
        start_idx = np.maximum.accumulate(np.where(run_start, idx, 0), axis=0)
        end_idx = np.minimum.accumulate(np.where(run_end, idx, n - 1)[::-1], axis=0)[::-1]
        cum = np.cumsum(dist, axis=0)
        cum_before = cum - dist
        run_length = np.take_along_axis(cum, end_idx, axis=0) - np.take_along_axis(
            cum_before, start_idx, axis=0
        )
        speed = np.minimum(max_speed_per_s, np.sqrt(max_accel_per_s2 * np.maximum(run_length, 0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        cruise = np.where(moving, dist / speed, 0.0)
    return cruise, run_start, run_end


def segment_timing(
    motions: Sequence[AxisMotion],
    meterset_delta: np.ndarray,
    max_rate_per_min: float,
    *,
    rate_set_per_min: np.ndarray | None = None,
    rate_bins_per_min: Sequence[float] | None = None,
) -> SegmentTiming:
    """Duration, servo rate and limiting axis of consecutive segments (model in the module docstring).

    ``meterset_delta`` (n,) is the meterset of each segment (0 = beam off); ``max_rate_per_min`` the
    energy's maximum rate (meterset per minute); ``rate_set_per_min`` (n,) the plan's Dose Rate Set of
    each segment's first control point (NaN = none), which caps the rate; ``rate_bins_per_min`` the
    allowed rates of a binned servo (None = continuous). Axes are at rest before the first and after the
    last segment.
    """
    dmeter = np.asarray(meterset_delta, dtype=float)
    if dmeter.ndim != 1:
        raise ValueError("meterset_delta must be one-dimensional (one value per segment)")
    if np.any(dmeter < 0):
        raise ValueError("meterset_delta must not be negative")
    n = dmeter.shape[0]
    cap = np.full(n, float(max_rate_per_min))
    if rate_set_per_min is not None:
        rate_set = np.asarray(rate_set_per_min, dtype=float)
        cap = np.where(np.isfinite(rate_set) & (rate_set > 0), np.minimum(cap, rate_set), cap)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_dose = np.where(dmeter > 0, 60.0 * dmeter / cap, 0.0)

    groups: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float | None]]] = {}
    t0 = t_dose.copy()
    for motion in motions:
        delta = np.asarray(motion.delta, dtype=float).reshape(n, -1)
        delta = np.where(np.isfinite(delta), delta, 0.0)
        cruise, starts, ends = _actuator_times(delta, motion.max_speed_per_s, motion.max_accel_per_s2)
        groups.setdefault(motion.group, []).append((delta, cruise, starts, ends, motion.max_accel_per_s2))
        if cruise.size:
            t0 = np.maximum(t0, cruise.max(axis=1))

    start_ramp = np.zeros(n)
    stop_ramp = np.zeros(n)
    axis_times: dict[str, np.ndarray] = {DOSE: t_dose}
    with np.errstate(divide="ignore", invalid="ignore"):
        for group, parts in groups.items():
            group_time = np.zeros(n)
            for delta, cruise, starts, ends, accel in parts:
                own = cruise
                if accel is not None:
                    speed = np.where(t0[:, None] > 0, np.abs(delta) / t0[:, None], 0.0)
                    ramp = speed / (2.0 * accel)
                    up = np.where(starts, ramp, 0.0)
                    down = np.where(ends, ramp, 0.0)
                    own = cruise + up + down
                    if up.size:
                        start_ramp = np.maximum(start_ramp, up.max(axis=1))
                        stop_ramp = np.maximum(stop_ramp, down.max(axis=1))
                if own.size:
                    group_time = np.maximum(group_time, own.max(axis=1))
            axis_times[group] = group_time
    ramp_time = start_ramp + stop_ramp
    needed = t0 + ramp_time

    if rate_bins_per_min is None:
        duration = needed
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where((dmeter > 0) & (duration > 0), 60.0 * dmeter / duration, 0.0)
    else:
        duration, rate = _binned(dmeter, needed, cap, rate_bins_per_min)

    names = list(axis_times)
    table = np.vstack([axis_times[k] for k in names])
    best = np.argmax(table, axis=0)
    limiting = tuple(NOTHING if duration[i] <= 0 else names[best[i]] for i in range(n))
    return SegmentTiming(
        duration_s=duration,
        beam_rate_per_min=rate,
        limiting_axis=limiting,
        axis_times_s=axis_times,
        ramp_time_s=ramp_time,
    )


def _binned(
    dmeter: np.ndarray, needed_s: np.ndarray, cap: np.ndarray, bins: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Largest allowed bin per segment that does not outrun the axes; (duration_s, rate_per_min)."""
    bins_arr = np.sort(np.asarray([b for b in bins if b > 0], dtype=float))[::-1]
    if bins_arr.size == 0:
        raise ValueError("a binned dose-rate servo needs at least one positive bin")
    duration = needed_s.copy()
    rate = np.zeros_like(needed_s)
    for i in np.flatnonzero(dmeter > 0):
        with np.errstate(divide="ignore"):
            fastest_ok = 60.0 * dmeter[i] / needed_s[i] if needed_s[i] > 0 else np.inf
        usable = bins_arr[(bins_arr <= cap[i] * (1 + 1e-12)) & (bins_arr <= fastest_ok * (1 + 1e-12))]
        if usable.size:
            rate[i] = usable[0]
            duration[i] = max(needed_s[i], 60.0 * dmeter[i] / rate[i])
        else:  # even the slowest bin is too fast: the servo holds the beam; report the average rate
            rate[i] = 60.0 * dmeter[i] / needed_s[i]
    return duration, rate


def elekta_bins_per_min(max_rate_per_min: float, min_rate_per_min: float) -> tuple[float, ...]:
    """Default binned rates ``max / 2**k`` down to ``min_rate_per_min`` (machine-models.md §1.3)."""
    bins = []
    rate = float(max_rate_per_min)
    while rate >= min_rate_per_min and len(bins) < 16:
        bins.append(rate)
        rate /= 2.0
    return tuple(bins) or (float(max_rate_per_min),)
