"""Source decay and the dwell-time correction, with numbers worked by hand."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from machine_models.decay import decay_fraction, dwell_time_factor, elapsed_days, strength_at

IR192_DAYS = 73.83
CAL = datetime(2025, 1, 6, 9, 0)


def test_one_half_life_halves_the_strength() -> None:
    assert decay_fraction(IR192_DAYS, IR192_DAYS) == 0.5


def test_ninety_days_leaves_43_percent() -> None:
    # 2 ** (-90 / 73.83) = exp(-0.693147 * 1.219017) = exp(-0.844958) = 0.42957
    assert decay_fraction(IR192_DAYS, 90.0) == pytest.approx(0.42957, abs=5e-5)


def test_one_day_is_0_934_percent() -> None:
    assert 1.0 - decay_fraction(IR192_DAYS, 1.0) == pytest.approx(0.00934, abs=5e-5)


def test_strength_back_in_time_grows() -> None:
    assert strength_at(40800.0, CAL, IR192_DAYS, CAL - timedelta(days=IR192_DAYS)) == pytest.approx(81600.0)


def test_elapsed_days_counts_hours() -> None:
    assert elapsed_days(CAL, CAL + timedelta(hours=36)) == 1.5


def test_dwell_factor_is_one_at_calibration_for_the_same_strength() -> None:
    assert dwell_time_factor(40800.0, 40800.0, CAL, IR192_DAYS, CAL) == 1.0


def test_dwell_times_double_after_one_half_life() -> None:
    later = CAL + timedelta(days=IR192_DAYS)
    assert dwell_time_factor(40800.0, 40800.0, CAL, IR192_DAYS, later) == pytest.approx(2.0)


def test_plan_computed_for_a_weaker_source_gets_shorter_times() -> None:
    # plan for 30 000 U; installed 40 800 U at calibration, treated 10 days later:
    # 40 800 * 2 ** (-10 / 73.83) = 40 800 * 0.910388 = 37 143.8 U; factor 30 000 / 37 143.8 = 0.807671
    factor = dwell_time_factor(30000.0, 40800.0, CAL, IR192_DAYS, CAL + timedelta(days=10))
    assert factor == pytest.approx(0.807671, abs=5e-6)


@pytest.mark.parametrize("half_life", [0.0, -1.0, math.nan, math.inf])
def test_bad_half_life_is_refused(half_life: float) -> None:
    with pytest.raises(ValueError, match="half-life"):
        decay_fraction(half_life, 1.0)


def test_zero_strength_is_refused() -> None:
    with pytest.raises(ValueError, match="strengths"):
        dwell_time_factor(0.0, 40800.0, CAL, IR192_DAYS, CAL)


def test_source_exchange_moves_only_the_calibration_date() -> None:
    from machine_models import load_model
    from machine_models.decay import with_source_calibrated

    model = load_model("microselectron-v3")
    fresh = with_source_calibrated(model, datetime(2030, 5, 1, 8, 0))
    assert fresh.afterloader.source.calibration_datetime == datetime(2030, 5, 1, 8, 0)
    assert fresh.afterloader.source.serial_number == model.afterloader.source.serial_number
    assert fresh.afterloader.channel_count == 18
    with pytest.raises(ValueError, match="no afterloader"):
        with_source_calibrated(load_model("truebeam-hd120"), CAL)
