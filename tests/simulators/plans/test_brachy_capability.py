"""Every reason an afterloader refuses a brachy plan, each naming the channel and control point."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime

import pytest
from pydicom.dataset import Dataset

from machine_models import load_model
from simulators.plans.brachy_capability import (
    channel_step_mm,
    check_brachy_plan,
    check_brachy_tasks,
    normalize_isotope,
)
from simulators.plans.brachy_model import BrachyTask, ChannelWindow
from simulators.plans.brachy_reader import read_brachy_plan_dataset
from simulators.plans.samples.brachy import ChannelSpec, build_brachy_plan, sample_brachy_plan

HDR = load_model("microselectron-v3")
PDR = load_model("microselectron-pdr")


def _check(ds: Dataset, machine=HDR, answers_to: str | None = None) -> list[str]:
    plan = read_brachy_plan_dataset(ds, "plan.dcm")
    return check_brachy_plan(plan, machine, answers_to=answers_to or machine.treatment_machine_name)


def _edited(name: str, edit) -> Dataset:
    ds = copy.deepcopy(sample_brachy_plan(name))
    edit(ds)
    return ds


def _ch(ds: Dataset, index: int = 0) -> Dataset:
    return ds.ApplicationSetupSequence[0].ChannelSequence[index]


@pytest.mark.parametrize("name", ["hdr-cervix", "hdr-prostate", "hdr-cylinder"])
def test_sample_hdr_plans_are_deliverable(name: str) -> None:
    assert _check(sample_brachy_plan(name)) == []


def test_sample_pdr_plan_is_deliverable_on_the_pdr_unit_only() -> None:
    ds = sample_brachy_plan("pdr-cervix")
    assert _check(ds, PDR) == []
    reasons = _check(ds, HDR, answers_to="mSelectronPDR")
    assert any("Brachy Treatment Type (300A,0202) 'PDR': this unit delivers HDR only" in r for r in reasons)


def test_other_machine_name_and_unapproved() -> None:
    ds = _edited("hdr-cylinder", lambda d: setattr(d, "ApprovalStatus", "UNAPPROVED"))
    reasons = _check(ds, answers_to="OtherHDR")
    assert any(
        "Treatment Machine Name (300A,00B2) is 'mSelectronHDR', this machine is 'OtherHDR'" in r
        for r in reasons
    )
    assert any("Approval Status (300E,0002) is UNAPPROVED" in r for r in reasons)


def test_too_many_channels_and_channel_number_beyond_the_indexer() -> None:
    specs = [
        ChannelSpec(n, 1200.0, (1194.0,), (5.0,)) for n in range(1, 20)
    ]  # 19 channels on an 18-channel unit
    reasons = _check(build_brachy_plan(specs, label="many"))
    assert any("plan.dcm: 19 channels, the indexer has 18" in r for r in reasons)
    assert any("channel 19: Channel Number (300A,0282) 19 is not in 1..18" in r for r in reasons)


def test_channel_too_long() -> None:
    ds = _edited("hdr-cylinder", lambda d: setattr(_ch(d), "ChannelLength", "1600"))
    reasons = _check(ds)
    assert reasons == [
        "plan.dcm: application setup 1, channel 1: Channel Length (300A,0284) 1600 mm is outside 0..1500 mm"
    ]


def test_dwell_beyond_the_channel_length() -> None:
    ds = _edited("hdr-cylinder", lambda d: setattr(_ch(d), "ChannelLength", "1000"))
    reasons = _check(ds)
    assert any(
        "channel 1, control point 0: Control Point Relative Position (300A,02D2) 1194 mm is outside the "
        "channel (0..1000 mm)" in r
        for r in reasons
    )


def test_positions_off_every_step_size() -> None:
    spec = ChannelSpec(1, 1200.0, (1194.0, 1190.5, 1187.0), (5.0, 5.0, 5.0), step_mm=3.5)
    reasons = _check(build_brachy_plan([spec], label="odd step"))
    assert any(
        "Source Applicator Step Size (300A,02A0) 3.5 mm is not one of the unit's step sizes" in r
        for r in reasons
    )
    ds = build_brachy_plan([spec], label="no step given")
    del _ch(ds).SourceApplicatorStepSize
    reasons = _check(ds)
    assert any(
        "dwell positions 1194, 1190.5, 1187 mm lie on none of the unit's step sizes" in r for r in reasons
    )


def test_too_many_dwell_positions() -> None:
    positions = tuple(1194.0 - 2.5 * k for k in range(49))  # 49 positions; the microSelectron holds 48
    spec = ChannelSpec(1, 1200.0, positions, (1.0,) * 49, step_mm=2.5)
    reasons = _check(build_brachy_plan([spec], label="long"))
    assert reasons == [
        "plan.dcm: application setup 1, channel 1: dwell positions span 49 steps of 2.5 mm (49 dwells); "
        "a channel holds at most 48"
    ]


def test_span_counts_positions_skipped_too() -> None:
    spec = ChannelSpec(
        1, 1200.0, (1194.0, 1194.0 - 2.5 * 48), (1.0, 1.0), step_mm=2.5
    )  # 2 dwells 49 steps apart
    assert any("span 49 steps" in r for r in _check(build_brachy_plan([spec], label="far")))


def test_dwell_time_below_the_timer_resolution_names_the_control_point() -> None:
    spec = ChannelSpec(1, 1200.0, (1194.0, 1189.0), (5.0, 0.05))
    reasons = _check(build_brachy_plan([spec], label="short"))
    assert reasons == [
        "plan.dcm: application setup 1, channel 1, control point 3: dwell time 0.05 s at 1189 mm is below "
        "the timer resolution 0.1 s"
    ]


def test_dwell_time_above_the_longest_dwell() -> None:
    spec = ChannelSpec(1, 1200.0, (1194.0,), (1200.0,))
    assert any(
        "is above the longest dwell 999.9 s" in r
        for r in _check(build_brachy_plan([spec], label="long dwell"))
    )


def test_oscillating_source_is_refused() -> None:
    ds = _edited("hdr-cylinder", lambda d: setattr(_ch(d), "SourceMovementType", "OSCILLATING"))
    assert any("Source Movement Type (300A,0288) OSCILLATING is not supported" in r for r in _check(ds))


def test_other_isotope_is_refused() -> None:
    ds = _edited("hdr-cylinder", lambda d: setattr(d.SourceSequence[0], "SourceIsotopeName", "Co-60"))
    reasons = _check(ds)
    assert reasons == [
        "plan.dcm: source 1: Source Isotope Name (300A,0226) 'Co-60' differs from the installed Ir-192 "
        "source (serial RTSIM-IR192-0001)"
    ]


@pytest.mark.parametrize("name", ["Ir-192", "IR192", "Iridium-192", "192Ir", "ir 192"])
def test_isotope_spellings_match(name: str) -> None:
    assert normalize_isotope(name) == "IR192"


def test_other_half_life_is_refused() -> None:
    ds = _edited("hdr-cylinder", lambda d: setattr(d.SourceSequence[0], "SourceIsotopeHalfLife", "80"))
    assert any("Source Isotope Half Life (300A,0228) 80 d differs" in r for r in _check(ds))


def test_source_strength_beyond_tolerance_is_refused() -> None:
    # 45 000 U at the calibration date is +10.3 % over the certificate's 40 800 U (tolerance 5 %)
    ds = _edited("hdr-cylinder", lambda d: setattr(d.SourceSequence[0], "ReferenceAirKermaRate", "45000"))
    reasons = _check(ds)
    assert len(reasons) == 1
    assert "Reference Air Kerma Rate (300A,022A) 45000 uGy/h" in reasons[0]
    assert "+10.3 % from its 40800 uGy/h (tolerance 5 %)" in reasons[0]


def test_strength_of_the_same_source_at_a_later_date_is_accepted() -> None:
    # the same source planned 30 days after calibration: 40800 x 2^(-30/73.83) = 40800 x 0.754536 = 30785.06
    ds = build_brachy_plan(
        [ChannelSpec(1, 1200.0, (1194.0,), (10.0,))],
        label="later",
        source_strength_datetime=datetime(2025, 2, 5, 9),
    )
    assert float(ds.SourceSequence[0].ReferenceAirKermaRate) == pytest.approx(30785.06, abs=0.01)
    assert _check(ds) == []


def test_missing_strength_reference_is_refused() -> None:
    ds = _edited("hdr-cylinder", lambda d: delattr(d.SourceSequence[0], "SourceStrengthReferenceDate"))
    assert any("are needed to correct dwell times for decay" in r for r in _check(ds))


def test_pdr_pulse_longer_than_its_interval_is_refused() -> None:
    spec = ChannelSpec(1, 1200.0, (1194.0,), (900.0,))
    ds = build_brachy_plan(
        [spec] * 1
        + [dataclasses.replace(spec, number=2), dataclasses.replace(spec, number=3)]
        + [dataclasses.replace(spec, number=n) for n in (4, 5)],
        label="pdr long",
        treatment_type="PDR",
        machine_name="mSelectronPDR",
        pulses=10,
        pulse_interval_s=3600.0,
        source=PDR.afterloader.source,
    )
    reasons = _check(ds, PDR)
    assert reasons == [
        "plan.dcm: one pulse needs 4500.0 s of dwell time, more than the Pulse Repetition Interval "
        "(300A,028C) 3600 s"
    ]


def test_pdr_plan_without_pulses_is_refused() -> None:
    ds = _edited("pdr-cervix", lambda d: delattr(_ch(d), "NumberOfPulses"))
    assert any(
        "channel 1: Number of Pulses (300A,028A) is required for a PDR plan" in r for r in _check(ds, PDR)
    )


def test_not_an_afterloader() -> None:
    plan = read_brachy_plan_dataset(sample_brachy_plan("hdr-cylinder"), "plan.dcm")
    reasons = check_brachy_plan(plan, load_model("truebeam-hd120"), answers_to="mSelectronHDR")
    assert reasons == ["plan.dcm: machine truebeam-hd120 is not an afterloader (kind linac)"]


def test_step_size_is_inferred_when_the_plan_gives_none() -> None:
    ds = sample_brachy_plan("hdr-cylinder")
    del _ch(ds).SourceApplicatorStepSize
    channel = read_brachy_plan_dataset(ds, "p").channel(1)
    assert channel_step_mm(channel, (2.5, 5.0, 10.0)) == 5.0


def test_tasks_that_do_not_fit_the_plan() -> None:
    plan = read_brachy_plan_dataset(sample_brachy_plan("hdr-cervix"), "plan.dcm")
    reasons = check_brachy_tasks(
        plan,
        [
            BrachyTask(setup_number=2),
            BrachyTask(
                setup_number=1,
                delivery_type="CONTINUATION",
                continuation={1: ChannelWindow(50.0, 40.0), 7: ChannelWindow(0.0, 1.0)},
                continuation_pulse=3,
            ),
        ],
    )
    assert reasons == [
        "plan.dcm: delivery instruction names application setup 2, the plan has 1",
        "plan.dcm: delivery instruction names channel 7, not in application setup 1",
        "plan.dcm: channel 1: Start/End Cumulative Time Weight 50/40 not within 0..175 with start < end",
        "plan.dcm: Continuation Pulse Number (0074,1404) 3 is not in 1..1",
    ]
