"""Afterloader program builder: dwell, transit, check-cable and decay numbers worked by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from machine_models import load_model
from simulators.core.engine import DeliveryEngine
from simulators.core.program import SegmentKind
from simulators.devices.afterloader import (
    CHECK_CABLE,
    DWELL,
    INDEXER,
    PULSE_INTERVAL,
    SYNTHETIC_CP,
    TRANSIT,
    build_afterloader_program,
    corrected_cumulative_time_s,
    planned_units,
    time_at_weight,
    weight_at_time,
)
from simulators.errors import RtsimError
from simulators.plans.brachy_model import BrachyTask, ChannelWindow
from simulators.plans.brachy_reader import read_brachy_plan_dataset
from simulators.plans.samples.brachy import ChannelSpec, build_brachy_plan, sample_brachy_plan

HDR = load_model("microselectron-v3")  # 330 mm/s, settle 0.026 s, indexer 2 s, safe 300 mm, timer 0.1 s
CAL = datetime(2025, 1, 6, 9, 0)


def _plan(specs, **kwargs):
    return read_brachy_plan_dataset(build_brachy_plan(specs, label="t", **kwargs), "t.dcm")


def test_one_channel_worked_by_hand() -> None:
    # two dwells 10 s at 1194 mm and 5 s at 1189 mm, treated at the calibration date (no decay)
    plan = _plan([ChannelSpec(1, 1200.0, (1194.0, 1189.0), (10.0, 5.0))])
    program = build_afterloader_program(plan, HDR, treatment_time=CAL)
    (unit,) = program.units
    kinds = [(s.kind, s.limiting_axis) for s in unit.segments]
    assert kinds == [
        (SegmentKind.SETUP, INDEXER),
        (SegmentKind.HOLD_MOVE, CHECK_CABLE),
        (SegmentKind.HOLD_MOVE, CHECK_CABLE),
        (SegmentKind.BEAM, TRANSIT),
        (SegmentKind.BEAM, DWELL),
        (SegmentKind.BEAM, TRANSIT),
        (SegmentKind.BEAM, DWELL),
        (SegmentKind.BEAM, TRANSIT),
    ]
    durations = [s.duration_s for s in unit.segments]
    check = (300.0 + 1194.0) / 330.0  # 4.527273 s each way
    assert durations == pytest.approx(
        [
            2.0,  # indexer
            check,
            check,
            1494.0 / 330.0 + 0.026,  # out to the first dwell + settle = 4.553273 s
            10.0,
            5.0 / 330.0 + 0.026,  # 5 mm step + settle = 0.041152 s
            5.0,
            1489.0 / 330.0,  # back to the safe = 4.512121 s
        ]
    )
    assert unit.total_time_s == pytest.approx(
        2.0 + 2 * check + 4.553273 + 10.0 + 0.041152 + 5.0 + 4.512121, abs=1e-5
    )
    assert unit.beam_on_time_s == pytest.approx(
        4.553273 + 10.0 + 0.041152 + 5.0 + 4.512121, abs=1e-5
    )  # source out
    assert unit.specified_meterset == pytest.approx(15.0)
    assert unit.meterset_unit == "s"
    assert list(unit.cp_meterset) == pytest.approx([0, 0, 0, 0, 10, 10, 15, 15])
    assert list(unit.cp_plan_indices) == [SYNTHETIC_CP] * 3 + [0, 1, 2, 3] + [SYNTHETIC_CP]
    assert list(unit.cp_positions["source_position_mm"]) == [-300, -300, -300, 1194, 1194, 1189, 1189, -300]
    assert list(unit.cp_positions["check_cable_mm"]) == [-300, 1194] + [-300] * 6


def test_decay_after_one_half_life_doubles_every_dwell() -> None:
    plan = _plan([ChannelSpec(1, 1200.0, (1194.0, 1189.0), (10.0, 5.0))])
    program = build_afterloader_program(plan, HDR, treatment_time=CAL + timedelta(days=73.83))
    dwell = [s.duration_s for s in program.units[0].segments if s.limiting_axis == DWELL]
    assert dwell == pytest.approx([20.0, 10.0])
    assert program.units[0].specified_meterset == pytest.approx(30.0)


def test_corrected_dwells_are_rounded_to_the_timer_resolution() -> None:
    # 10 days after calibration: factor 2^(10/73.83) = 1.098432; 10 s -> 10.98 -> 11.0 s, 5 s -> 5.49 -> 5.5 s
    plan = _plan([ChannelSpec(1, 1200.0, (1194.0, 1189.0), (10.0, 5.0))])
    program = build_afterloader_program(plan, HDR, treatment_time=CAL + timedelta(days=10))
    dwell = [s.duration_s for s in program.units[0].segments if s.limiting_axis == DWELL]
    assert dwell == pytest.approx([11.0, 5.5])


def test_without_a_treatment_time_the_plan_reference_is_used() -> None:
    plan = _plan([ChannelSpec(1, 1200.0, (1194.0,), (12.3,))])
    assert build_afterloader_program(plan, HDR).units[0].specified_meterset == pytest.approx(12.3)


def test_engine_plays_the_program_and_reports_dwell_apart_from_transit() -> None:
    plan = read_brachy_plan_dataset(sample_brachy_plan("hdr-cylinder"), "cyl")
    program = build_afterloader_program(plan, HDR, treatment_time=CAL)
    result = DeliveryEngine(program, session_start=CAL).run()
    (unit,) = result.units
    assert unit.delivered_meterset == pytest.approx(114.5)  # dwell time only
    transit = unit.total_time_s * unit.limiting_axis_share[TRANSIT]
    # out 4.553273 + 7 steps x 0.041152 + back (300 + 1159) / 330 = 4.421212
    assert transit == pytest.approx(4.553273 + 7 * 0.041152 + 4.421212, abs=1e-4)
    assert result.end_time_s == pytest.approx(program.total_time_s)


def test_pdr_pulses_start_on_the_interval() -> None:
    plan = read_brachy_plan_dataset(sample_brachy_plan("pdr-cervix"), "pdr")
    pdr = load_model("microselectron-pdr")
    program = build_afterloader_program(plan, pdr, treatment_time=CAL)
    assert len(program.units) == 48  # 2 channels x 24 pulses
    starts, t = [], 0.0
    for unit in program.units:
        if unit.segments[0].limiting_axis in (PULSE_INTERVAL,) or not starts:
            starts.append(t + unit.segments[0].duration_s)
        t += unit.total_time_s
    assert np.diff(starts) == pytest.approx([3600.0] * 23)
    assert program.units[2].name == "TANDEM 60 pulse 2/24"


def test_continuation_window_skips_what_was_delivered() -> None:
    # channel 1: dwells 10 s and 5 s (weights 0,10,10,15); resume at weight 4 (6 s of the first dwell left)
    plan = _plan(
        [ChannelSpec(1, 1200.0, (1194.0, 1189.0), (10.0, 5.0)), ChannelSpec(2, 1200.0, (1194.0,), (8.0,))]
    )
    task = BrachyTask(
        setup_number=1,
        delivery_type="CONTINUATION",
        continuation={1: ChannelWindow(4.0, 15.0)},
    )
    program = build_afterloader_program(plan, HDR, [task], treatment_time=CAL)
    first, second = program.units
    assert first.meterset_offset == pytest.approx(4.0)
    assert first.specified_meterset == pytest.approx(11.0)
    assert [s.duration_s for s in first.segments if s.limiting_axis == DWELL] == pytest.approx([6.0, 5.0])
    assert second.specified_meterset == pytest.approx(8.0)


def test_continuation_omits_channels_and_keeps_the_order() -> None:
    plan = _plan([ChannelSpec(n, 1200.0, (1194.0,), (5.0,)) for n in (1, 2, 3)])
    task = BrachyTask(
        setup_number=1,
        delivery_type="CONTINUATION",
        channel_order=(3, 2, 1),
        omitted_channels=((2, "ALREADY_TREATED"),),
    )
    assert [u.channel.number for u in planned_units(plan, [task])] == [3, 1]


def test_pdr_continuation_starts_at_its_pulse() -> None:
    plan = read_brachy_plan_dataset(sample_brachy_plan("pdr-cervix"), "pdr")
    task = BrachyTask(
        setup_number=1,
        delivery_type="CONTINUATION",
        continuation_pulse=23,
        omitted_channels=((1, "ALREADY_TREATED"),),
    )
    units = planned_units(plan, [task])
    assert [(u.pulse, u.channel.number) for u in units] == [(23, 2), (24, 1), (24, 2)]


def test_weights_and_times_invert_each_other() -> None:
    plan = _plan([ChannelSpec(1, 1200.0, (1194.0, 1189.0), (10.0, 5.0))])
    channel = plan.channel(1)
    cumulative = corrected_cumulative_time_s(channel, 2.0, 0.1)  # 0, 20, 20, 30
    assert time_at_weight(channel, cumulative, 5.0) == pytest.approx(10.0)
    assert weight_at_time(channel, cumulative, 25.0) == pytest.approx(12.5)
    assert weight_at_time(channel, cumulative, 30.0) == 15.0


def test_linac_model_is_refused() -> None:
    plan = _plan([ChannelSpec(1, 1200.0, (1194.0,), (5.0,))])
    with pytest.raises(RtsimError, match="not an afterloader"):
        build_afterloader_program(plan, load_model("truebeam-hd120"))
