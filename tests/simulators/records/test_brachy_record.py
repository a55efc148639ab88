"""RT Brachy Treatment Records: normal HDR and PDR sessions and the record of each afterloader fault."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from dciodvfy import dciodvfy_errors

from machine_models import load_model
from simulators.core.results import TerminationStatus
from simulators.devices.afterloader_faults import AfterloaderFaults
from simulators.devices.session import DeliverySession, SessionRequest
from simulators.plans.brachy_model import BrachyTask, ChannelWindow
from simulators.plans.samples.brachy import sample_brachy_plan
from simulators.records.brachy_record import PRIVATE_CREATOR
from simulators.records.common import write_record
from simulators.records.summary import build_summary

HDR = load_model("microselectron-v3")
PDR = load_model("microselectron-pdr")
CAL = datetime(2025, 1, 6, 9, 0)
#: dicom3tools looks for "Brachy Treatment Type is PDR" inside the Recorded Channel Sequence item, so it
#: calls the PDR pulse attributes misplaced (see tests/simulators/plans/test_brachy_samples.py).
PDR_FALSE_ERRORS = frozenset(
    f"Error - Attribute present when condition unsatisfied (which may not be present otherwise) Type 1C "
    f"Conditional Element=<{name}> Module=<RTBrachySessionRecord>"
    for name in (
        "SpecifiedNumberOfPulses",
        "DeliveredNumberOfPulses",
        "SpecifiedPulseRepetitionInterval",
        "DeliveredPulseRepetitionInterval",
    )
)


def _run(name="hdr-cervix", machine=HDR, when=CAL, hook=None, tasks=None):
    request = SessionRequest(
        plan_dataset=sample_brachy_plan(name), machine=machine, session_start=when, beam_tasks=tasks, seed=3
    )
    return DeliverySession(request, engine_hooks=(hook,) if hook else ()).run()


def _faults(action):
    def hook(engine):
        action(AfterloaderFaults(engine, emergency_retraction_s=HDR.afterloader.emergency_retraction_s))

    return hook


def _clean(outcome, tmp_path: Path, pdr: bool = False) -> pydicom.Dataset:
    path = write_record(outcome.record, tmp_path / "record.dcm")
    errors = dciodvfy_errors(path)
    assert set(errors) <= (PDR_FALSE_ERRORS if pdr else set())
    return pydicom.dcmread(path)


def _channels(ds):
    return list(ds.TreatmentSessionApplicationSetupSequence[0].RecordedChannelSequence)


def test_hdr_fraction_record(tmp_path: Path) -> None:
    later = CAL + timedelta(days=73.83)  # one half-life: every dwell doubles
    outcome = _run(when=later)
    assert outcome.result.completed
    ds = _clean(outcome, tmp_path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.6"
    assert ds.BrachyTreatmentType == "HDR"
    source = ds.RecordedSourceSequence[0]
    assert source.SourceSerialNumber == "RTSIM-IR192-0001"
    assert float(source.ReferenceAirKermaRate) == 40800.0
    setup = ds.TreatmentSessionApplicationSetupSequence[0]
    assert setup.TreatmentTerminationStatus == "NORMAL"
    assert setup.ApplicationSetupCheck == "PASSED"
    tandem, ring = _channels(ds)
    assert float(tandem.SpecifiedChannelTotalTime) == pytest.approx(350.0)  # 175 s planned x 2
    assert float(tandem.DeliveredChannelTotalTime) == pytest.approx(350.0)
    assert float(ring.DeliveredChannelTotalTime) == pytest.approx(213.6)
    assert tandem.NumberOfControlPoints == 24
    assert [int(cp.ReferencedControlPointIndex) for cp in tandem.BrachyControlPointDeliveredSequence] == list(
        range(24)
    )
    exit_time = datetime.strptime(
        tandem.SafePositionExitDate + tandem.SafePositionExitTime, "%Y%m%d%H%M%S.%f"
    )
    back = datetime.strptime(tandem.SafePositionReturnDate + tandem.SafePositionReturnTime, "%Y%m%d%H%M%S.%f")
    assert (back - exit_time).total_seconds() > 350.0  # dwell plus transit
    assert float(ds.private_block(0x0011, PRIVATE_CREATOR)[0x01].value) == pytest.approx(2.0)
    summary = build_summary(outcome.plan, outcome.result, "record.dcm", HDR)
    assert summary["unit_kind"] == "channel"
    assert summary["afterloader"]["decay_correction_factor"] == pytest.approx(2.0)
    assert summary["afterloader"]["dwell_time_s"] == pytest.approx(563.6)
    assert summary["afterloader"]["transit_time_s"] > 0


def test_pdr_course_record(tmp_path: Path) -> None:
    outcome = _run("pdr-cervix", PDR)
    assert outcome.result.completed
    last_channel, last = outcome.program.units[-2:]
    last_pulse_s = last_channel.total_time_s - last_channel.segments[0].duration_s + last.total_time_s
    # pulse 1 starts after the 2 s indexer move, pulse 24 23 intervals later
    assert outcome.result.end_time_s == pytest.approx(2.0 + 23 * 3600.0 + last_pulse_s)
    ds = _clean(outcome, tmp_path, pdr=True)
    tandem, _ring = _channels(ds)
    assert tandem.SpecifiedNumberOfPulses == 24
    assert tandem.DeliveredNumberOfPulses == 24
    assert float(tandem.SpecifiedPulseRepetitionInterval) == 3600.0
    assert float(tandem.DeliveredPulseRepetitionInterval) == pytest.approx(3600.0)
    assert len(tandem.PulseSpecificBrachyControlPointDeliveredSequence) == 24
    # 125 s per pulse planned (175 x 5/7); each dwell rounded to the 0.1 s timer: 5.857 -> 5.9, 8.929 -> 8.9,
    # ... 8.429 -> 8.4, 124.9 s per pulse
    assert float(tandem.DeliveredChannelTotalTime) == pytest.approx(24 * 124.9, abs=1e-3)


def test_obstruction_on_the_first_channel_leaves_nothing_to_record() -> None:
    outcome = _run(hook=_faults(lambda f: f.obstruction(channel=1)))
    result = outcome.result
    assert result.termination_status is TerminationStatus.MACHINE
    assert result.termination_code == "OBSTRUCTION"
    first = result.units[0]
    assert first.delivered_meterset == 0.0
    assert all(cp.plan_cp_index < 0 for cp in first.control_points)  # the source never reached the plan
    cable = [cp.positions["check_cable_mm"] for cp in first.control_points]
    assert float(cable[-1]) == pytest.approx(-300.0 + 0.8 * 1494.0, abs=1.0)  # stopped at 80 % of its run
    assert not result.units[1].delivered
    assert outcome.record is None  # no source left the safe: the UPS is canceled without output


def test_wrong_channel_length_on_the_second_channel(tmp_path: Path) -> None:
    outcome = _run(hook=_faults(lambda f: f.wrong_channel_length(channel=2)))
    assert outcome.result.termination_code == "CHANNEL_LENGTH"
    ds = _clean(outcome, tmp_path)
    setup = ds.TreatmentSessionApplicationSetupSequence[0]
    assert setup.ApplicationSetupCheck == "FAILED"
    assert setup.TreatmentTerminationCode == "CHANNEL_LENGTH"
    (tandem,) = _channels(ds)  # the ring's source never left the safe: not a recorded channel
    assert float(tandem.DeliveredChannelTotalTime) == pytest.approx(175.0)


def test_source_stuck_record_returns_late(tmp_path: Path) -> None:
    outcome = _run(hook=_faults(lambda f: f.source_stuck(channel=1, dwell=3, retraction_s=45.0)))
    result = outcome.result
    assert result.termination_code == "SOURCE_STUCK"
    assert result.units[0].delivered_meterset == pytest.approx(8.2 + 12.5 + 15.9)  # three dwells done
    ds = _clean(outcome, tmp_path)
    (tandem,) = _channels(ds)
    stop = result.session_start + timedelta(seconds=result.units[0].end_time_s)
    back = datetime.strptime(tandem.SafePositionReturnDate + tandem.SafePositionReturnTime, "%Y%m%d%H%M%S.%f")
    # at the third dwell (1184 mm): retraction (300 + 1184) / 330 = 4.497 s plus 45 s by hand
    assert (back - stop).total_seconds() == pytest.approx(45.0 + 1484.0 / 330.0, abs=0.05)


def test_door_opened_mid_dwell(tmp_path: Path) -> None:
    outcome = _run(hook=_faults(lambda f: f.open_door(channel=1, dwell=2, into_s=5.0)))
    result = outcome.result
    assert result.termination_status is TerminationStatus.MACHINE
    assert result.termination_code == "DOOR"
    assert result.units[0].delivered_meterset == pytest.approx(8.2 + 5.0)
    assert not result.units[1].delivered
    ds = _clean(outcome, tmp_path)
    (tandem,) = _channels(ds)
    assert float(tandem.DeliveredChannelTotalTime) == pytest.approx(13.2)
    assert float(tandem.SpecifiedChannelTotalTime) == pytest.approx(175.0)


def test_power_loss_and_timer_discrepancy(tmp_path: Path) -> None:
    outcome = _run(
        hook=_faults(lambda f: f.power_loss(channel=2, dwell=1, into_s=2.0, battery_retraction_s=10.0))
    )
    assert outcome.result.termination_code == "POWER_FAIL"
    assert outcome.result.units[1].delivered_meterset == pytest.approx(2.0)
    _clean(outcome, tmp_path)
    outcome = _run(hook=_faults(lambda f: f.timer_discrepancy(channel=1, dwell=4, into_s=1.0)))
    assert outcome.result.termination_code == "TIMER"
    assert outcome.result.units[0].delivered_meterset == pytest.approx(8.2 + 12.5 + 15.9 + 1.0)
    _clean(outcome, tmp_path)


def test_door_interlock_failure_is_recorded_and_the_delivery_goes_on() -> None:
    outcome = _run(hook=_faults(lambda f: f.door_interlock_failure(channel=1, dwell=2)))
    assert outcome.result.completed
    assert any(getattr(e, "name", "") == "door_interlock_failure" for e in outcome.result.events)


def test_continuation_after_a_door_interlock_adds_up_to_the_plan(tmp_path: Path) -> None:
    first = _run(hook=_faults(lambda f: f.open_door(channel=1, dwell=5, into_s=3.0)))
    delivered = first.result.units[0].delivered_meterset
    weight = delivered  # the sample plan's weights are its planned seconds (final weight = channel time)
    task = BrachyTask(
        setup_number=1, delivery_type="CONTINUATION", continuation={1: ChannelWindow(weight, 175.0)}
    )
    second = _run(tasks=(task,))
    assert second.result.completed
    ds = _clean(second, tmp_path)
    assert ds.TreatmentSessionApplicationSetupSequence[0].TreatmentDeliveryType == "CONTINUATION"
    tandem, ring = _channels(ds)
    first_ds = first.record
    first_tandem = first_ds.TreatmentSessionApplicationSetupSequence[0].RecordedChannelSequence[0]
    total = float(first_tandem.DeliveredChannelTotalTime) + float(tandem.DeliveredChannelTotalTime)
    assert total == pytest.approx(175.0, abs=1e-3)
    assert float(ring.DeliveredChannelTotalTime) == pytest.approx(106.8)


def test_pdr_interrupted_in_pulse_five_then_continued_adds_up(tmp_path: Path) -> None:
    from simulators.dicom.brachy_instruction import plan_brachy_continuation

    first = _run(
        "pdr-cervix", PDR, hook=_faults(lambda f: f.open_door(channel=2, pulse=5, dwell=3, into_s=1.0))
    )
    assert first.result.termination_code == "DOOR"
    (task,) = plan_brachy_continuation(
        sample_brachy_plan("pdr-cervix"), [BrachyTask(1)], [first.record], fraction_number=1
    )
    assert task.continuation_pulse == 5
    assert task.omitted_channels == ((1, "ALREADY_TREATED"),)  # the tandem finished pulse 5
    second = _run("pdr-cervix", PDR, tasks=(task,))
    assert second.result.completed
    ds = _clean(second, tmp_path, pdr=True)
    for before, after in zip(_channels(first.record), _channels(ds), strict=True):
        delivered = float(before.DeliveredChannelTotalTime) + float(after.DeliveredChannelTotalTime)
        assert delivered == pytest.approx(float(before.SpecifiedChannelTotalTime), abs=1e-3)
        assert before.DeliveredNumberOfPulses + after.DeliveredNumberOfPulses == 24
