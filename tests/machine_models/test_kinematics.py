"""Worked numbers and invariants of the segment timing model (machine_models.kinematics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machine_models.kinematics import (
    AxisMotion,
    elekta_bins_per_min,
    move_time_s,
    rotation_delta_deg,
    segment_timing,
    shortest_rotation_deg,
)

GANTRY_DEG_PER_S = 6.0
LEAF_MM_PER_S = 25.0
RATE_6X = 600.0


# --- rest-to-rest moves -----------------------------------------------------------------------------


def test_leaf_move_vmax_only():
    assert move_time_s(50.0, LEAF_MM_PER_S) == pytest.approx(2.0)


def test_leaf_move_with_acceleration_adds_v_over_a():
    # trapezoid: 50/25 + 25/100 = 2.25 s (reaches vmax because 50 mm >= 25**2/100 = 6.25 mm)
    assert move_time_s(50.0, LEAF_MM_PER_S, 100.0) == pytest.approx(2.25)


def test_short_move_is_triangular():
    # 4 mm < 6.25 mm: never reaches vmax, 2*sqrt(4/100) = 0.4 s (and not 4/25 + 25/100 = 0.41 s)
    assert move_time_s(4.0, LEAF_MM_PER_S, 100.0) == pytest.approx(0.4)


def test_move_time_is_vectorised_and_unsigned():
    times = move_time_s(np.array([-50.0, 0.0, 50.0]), LEAF_MM_PER_S, 100.0)
    np.testing.assert_allclose(times, [2.25, 0.0, 2.25])


def test_nonzero_move_never_takes_zero_seconds():
    assert move_time_s(1e-6, LEAF_MM_PER_S, 100.0) > 0


@pytest.mark.parametrize(("speed", "accel"), [(0.0, None), (-1.0, None), (25.0, 0.0)])
def test_move_time_rejects_bad_limits(speed, accel):
    with pytest.raises(ValueError, match="must be > 0"):
        move_time_s(1.0, speed, accel)


# --- rotations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "direction", "increasing", "expected"),
    [
        (5.0, 5.0, "CW", "CW", 360.0),  # PS3.3 C.8.8.14.8 example 2
        (5.0, 5.0, "NONE", "CW", 0.0),  # example 1
        (170.0, 160.0, "CC", "CC", 350.0),  # example 3: table angle increases CC (IEC 61217)
        (0.0, 270.0, "CC", "CW", -90.0),  # gantry CC arc 0 -> 270
        (0.0, 90.0, "CW", "CW", 90.0),
        (350.0, 10.0, "CW", "CW", 20.0),
        (181.0, 179.0, "CW", "CW", 358.0),  # the long way round when the plan says so
        (10.0, 350.0, "NONE", "CW", -20.0),  # no direction: the shorter way
    ],
)
def test_rotation_delta(start, end, direction, increasing, expected):
    assert float(rotation_delta_deg(start, end, direction, increasing)) == pytest.approx(expected)


def test_rotation_delta_vectorised_per_segment_direction():
    deltas = rotation_delta_deg([0.0, 359.0, 358.0], [359.0, 358.0, 358.0], ["CC", "CC", "NONE"])
    np.testing.assert_allclose(deltas, [-1.0, -1.0, 0.0])


def test_shortest_rotation():
    np.testing.assert_allclose(shortest_rotation_deg([270.0, 10.0, 0.0], [0.0, 350.0, 0.0]), [90, -20, 0])


# --- segment timing: worked numbers -----------------------------------------------------------------


def _gantry(deltas_deg, accel=None):
    return AxisMotion("gantry", np.asarray(deltas_deg, dtype=float), GANTRY_DEG_PER_S, accel)


def _mlc(deltas_mm, accel=None):
    return AxisMotion("mlc", np.asarray(deltas_mm, dtype=float), LEAF_MM_PER_S, accel)


def test_gantry_limited_vmat_segment_lowers_dose_rate():
    # 2 MU over 4 deg: gantry needs 4/6 = 0.667 s, the dose only 0.2 s at 600 -> 180 MU/min
    timing = segment_timing([_gantry([4.0])], np.array([2.0]), RATE_6X)
    assert timing.duration_s[0] == pytest.approx(4.0 / 6.0)
    assert timing.beam_rate_per_min[0] == pytest.approx(180.0)
    assert timing.limiting_axis == ("gantry",)
    assert timing.axis_times_s["dose"][0] == pytest.approx(0.2)


def test_dose_limited_segment_runs_at_max_rate():
    # 20 MU over 2 deg: 2 s at 600 MU/min; the gantry slows to 1 deg/s
    timing = segment_timing([_gantry([2.0])], np.array([20.0]), RATE_6X)
    assert timing.duration_s[0] == pytest.approx(2.0)
    assert timing.beam_rate_per_min[0] == pytest.approx(600.0)
    assert timing.limiting_axis == ("dose",)


def test_mlc_limited_segment():
    # one leaf of 120 travels 20 mm (0.8 s) while 1 MU needs 0.1 s and the gantry 1 deg 0.167 s
    leaves = np.zeros((1, 120))
    leaves[0, 37] = -20.0
    timing = segment_timing([_gantry([1.0]), _mlc(leaves)], np.array([1.0]), RATE_6X)
    assert timing.duration_s[0] == pytest.approx(0.8)
    assert timing.beam_rate_per_min[0] == pytest.approx(75.0)
    assert timing.limiting_axis == ("mlc",)
    assert timing.axis_times_s["gantry"][0] == pytest.approx(1.0 / 6.0)


def test_dose_rate_set_caps_the_rate():
    # 20 MU with Dose Rate Set 300: 4 s instead of 2 s; NaN = no Dose Rate Set
    timing = segment_timing(
        [_gantry([2.0, 2.0])], np.array([20.0, 20.0]), RATE_6X, rate_set_per_min=np.array([300.0, np.nan])
    )
    np.testing.assert_allclose(timing.duration_s, [4.0, 2.0])
    np.testing.assert_allclose(timing.beam_rate_per_min, [300.0, 600.0])


def test_binned_servo_picks_the_largest_bin_that_does_not_outrun_the_gantry():
    # gantry needs 0.667 s for 2 MU -> at most 180 MU/min -> bin 150 -> 2 MU take 0.8 s
    bins = (600.0, 300.0, 150.0, 75.0)
    timing = segment_timing([_gantry([4.0])], np.array([2.0]), RATE_6X, rate_bins_per_min=bins)
    assert timing.beam_rate_per_min[0] == pytest.approx(150.0)
    assert timing.duration_s[0] == pytest.approx(0.8)
    assert timing.limiting_axis == ("gantry",)


def test_binned_servo_dose_limited_uses_top_bin_and_respects_dose_rate_set():
    bins = (600.0, 300.0, 150.0)
    timing = segment_timing(
        [_gantry([1.0, 1.0])],
        np.array([20.0, 20.0]),
        RATE_6X,
        rate_set_per_min=np.array([np.nan, 400.0]),
        rate_bins_per_min=bins,
    )
    np.testing.assert_allclose(timing.beam_rate_per_min, [600.0, 300.0])
    np.testing.assert_allclose(timing.duration_s, [2.0, 4.0])


def test_elekta_default_bins_halve_down_to_the_minimum():
    assert elekta_bins_per_min(600.0, 20.0) == (600.0, 300.0, 150.0, 75.0, 37.5)


def test_beam_off_segment_has_zero_rate_and_nothing_limits_an_idle_segment():
    timing = segment_timing([_gantry([0.0, 3.0])], np.array([0.0, 0.0]), RATE_6X)
    np.testing.assert_allclose(timing.duration_s, [0.0, 0.5])
    np.testing.assert_allclose(timing.beam_rate_per_min, [0.0, 0.0])
    assert timing.limiting_axis == ("none", "gantry")


# --- acceleration: starts, stops and reversals ------------------------------------------------------


def test_isolated_move_segment_matches_rest_to_rest_time():
    # step-and-shoot: beam, leaf move with beam held, beam. The move is a full trapezoid.
    leaves = np.array([[0.0, 0.0], [50.0, -30.0], [0.0, 0.0]])
    timing = segment_timing([_mlc(leaves, accel=100.0)], np.array([10.0, 0.0, 10.0]), RATE_6X)
    assert timing.duration_s[1] == pytest.approx(float(move_time_s(50.0, LEAF_MM_PER_S, 100.0)))
    np.testing.assert_allclose(timing.duration_s[[0, 2]], [1.0, 1.0])


def test_isolated_short_move_is_triangular():
    leaves = np.array([[0.0], [4.0], [0.0]])
    timing = segment_timing([_mlc(leaves, accel=100.0)], np.array([1.0, 0.0, 1.0]), RATE_6X)
    assert timing.duration_s[1] == pytest.approx(0.4)


def test_continuous_motion_pays_acceleration_only_at_start_and_end():
    # a leaf sweeping 4 x 25 mm in one direction: 4 s cruise + 25/100 s ramps = as one 100 mm move
    timing = segment_timing([_mlc(np.full(4, 25.0), accel=100.0)], np.zeros(4), RATE_6X)
    assert timing.total_time_s == pytest.approx(float(move_time_s(100.0, LEAF_MM_PER_S, 100.0)))
    np.testing.assert_allclose(timing.ramp_time_s, [0.125, 0.0, 0.0, 0.125])


def test_reversal_costs_a_stop_and_a_start():
    # signed motion: +25 then -25 mm is two rest-to-rest moves, not one 50 mm sweep
    timing = segment_timing([_mlc([25.0, -25.0], accel=100.0)], np.zeros(2), RATE_6X)
    assert timing.total_time_s == pytest.approx(2 * float(move_time_s(25.0, LEAF_MM_PER_S, 100.0)))
    same_direction = segment_timing([_mlc([25.0, 25.0], accel=100.0)], np.zeros(2), RATE_6X)
    assert timing.total_time_s > same_direction.total_time_s


def test_slow_axis_ramp_costs_less_than_a_fast_one():
    # dose-limited arc: the gantry turns at 1 deg/s, so its ramps cost (1/2)/12 s each, not (6/2)/12 s
    timing = segment_timing([_gantry([2.0], accel=12.0)], np.array([20.0]), RATE_6X)
    assert timing.duration_s[0] == pytest.approx(2.0 + 2 * 1.0 / 24.0)
    assert timing.limiting_axis == ("dose",)


# --- properties -------------------------------------------------------------------------------------

_delta = st.one_of(st.just(0.0), st.floats(-40.0, 40.0).filter(lambda x: abs(x) > 1e-3))
_accel = st.one_of(st.none(), st.floats(20.0, 800.0))


@st.composite
def _segments(draw):
    n = draw(st.integers(1, 8))
    leaves = draw(st.integers(1, 4))
    mlc = np.array(draw(st.lists(st.lists(_delta, min_size=leaves, max_size=leaves), min_size=n, max_size=n)))
    gantry = np.array(draw(st.lists(_delta, min_size=n, max_size=n)))
    meterset = np.array(
        draw(st.lists(st.one_of(st.just(0.0), st.floats(0.01, 30.0)), min_size=n, max_size=n))
    )
    rate_set = np.array(
        draw(st.lists(st.one_of(st.just(math.nan), st.floats(50.0, 600.0)), min_size=n, max_size=n))
    )
    motions = [
        AxisMotion("gantry", gantry, GANTRY_DEG_PER_S, draw(_accel)),
        AxisMotion("mlc", mlc, LEAF_MM_PER_S, draw(_accel)),
    ]
    return motions, meterset, rate_set


def _split(motions, meterset, rate_set, index):
    """Split segment ``index`` in two at its midpoint (half the motion and meterset in each)."""

    def halve(values):
        values = np.asarray(values, dtype=float)
        half = values[index] / 2.0
        return np.concatenate([values[:index], [half, half], values[index + 1 :]])

    split = [AxisMotion(m.group, halve(m.delta), m.max_speed_per_s, m.max_accel_per_s2) for m in motions]
    rates = np.concatenate([rate_set[: index + 1], [rate_set[index]], rate_set[index + 1 :]])
    return split, halve(meterset), rates


@settings(max_examples=150, deadline=None)
@given(_segments(), st.data())
def test_splitting_a_segment_does_not_change_the_total_time(case, data):
    motions, meterset, rate_set = case
    index = data.draw(st.integers(0, meterset.size - 1))
    whole = segment_timing(motions, meterset, RATE_6X, rate_set_per_min=rate_set)
    split_motions, split_meterset, split_rate_set = _split(motions, meterset, rate_set, index)
    split = segment_timing(split_motions, split_meterset, RATE_6X, rate_set_per_min=split_rate_set)
    assert split.total_time_s == pytest.approx(whole.total_time_s, rel=1e-9, abs=1e-9)
    assert np.sum(split.beam_rate_per_min * split.duration_s) == pytest.approx(
        np.sum(whole.beam_rate_per_min * whole.duration_s), rel=1e-9, abs=1e-9
    )


@settings(max_examples=150, deadline=None)
@given(_segments(), st.one_of(st.none(), st.just((600.0, 300.0, 150.0, 75.0, 37.5))))
def test_never_faster_than_any_axis_or_the_dose_rate_allows(case, bins):
    motions, meterset, rate_set = case
    timing = segment_timing(motions, meterset, RATE_6X, rate_set_per_min=rate_set, rate_bins_per_min=bins)
    eps = 1e-9
    for motion in motions:
        delta = np.abs(motion.delta.reshape(meterset.size, -1)).max(axis=1)
        moving = delta > 0
        assert np.all(timing.duration_s[moving] > 0)
        speed = delta[moving] / timing.duration_s[moving]
        assert np.all(speed <= motion.max_speed_per_s * (1 + eps))
    cap = np.where(np.isnan(rate_set), RATE_6X, np.minimum(rate_set, RATE_6X))
    beam = meterset > 0
    assert np.all(timing.beam_rate_per_min[beam] <= cap[beam] * (1 + eps))
    # the meterset is never delivered faster than the rate reported
    assert np.all(
        60.0 * meterset[beam] / timing.duration_s[beam] <= timing.beam_rate_per_min[beam] * (1 + eps)
    )
    assert np.all(timing.beam_rate_per_min[~beam] == 0.0)
    assert all(name in {"dose", "gantry", "mlc", "none"} for name in timing.limiting_axis)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.001, 300.0), st.floats(1.0, 50.0), st.floats(5.0, 1000.0))
def test_single_move_segment_equals_move_time(distance, speed, accel):
    motion = AxisMotion("mlc", np.array([distance]), speed, accel)
    timing = segment_timing([motion], np.zeros(1), RATE_6X)
    assert timing.duration_s[0] == pytest.approx(float(move_time_s(distance, speed, accel)), rel=1e-9)
