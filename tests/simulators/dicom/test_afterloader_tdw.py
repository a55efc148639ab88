"""The afterloader over DICOM (IHE-RO TDW-II, workitem 121735) against the embedded TMS.

An HDR fraction, a door interlock whose remaining dwells the TMS continues (brachy delivery instruction with
the Channel Delivery Continuation Sequence) so that the records add up to the plan, and a PDR course.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from dciodvfy import dciodvfy_errors

from machine_models import InstalledSource, dump_model, load_model
from simulators.core.clock import FastClock
from simulators.devices.afterloader_faults import AfterloaderFaults
from simulators.dicom import codes
from simulators.dicom.brachy_instruction import (
    build_brachy_instruction,
    plan_brachy_continuation,
    read_brachy_instruction,
)
from simulators.dicom.site import DeviceSpec, LocalSite
from simulators.plans.brachy_model import BrachyTask
from simulators.plans.samples.brachy import sample_brachy_plan

NOW = datetime(2025, 1, 20, 9, 0)  # two weeks after the bundled sources' calibration
HDR_SPEC = DeviceSpec("microselectron-v3", "HDR1", "AFTERLOADER1")
PDR_SPEC = DeviceSpec("microselectron-pdr", "PDR1", "AFTERLOADER2")


def _fixed_clock(_spec: DeviceSpec) -> dict:
    return {"now": lambda: NOW}


def _fresh_source_model(tmp_path: Path, model_id: str) -> tuple[str, InstalledSource]:
    """The bundled model with its source exchanged two weeks ago (the TMS schedules continuations at the
    real now, so the device must run on the real clock too)."""
    model = load_model(model_id)
    source = dataclasses.replace(
        model.afterloader.source,
        calibration_datetime=(datetime.now() - timedelta(days=14)).replace(microsecond=0),
    )
    fresh = dataclasses.replace(model, afterloader=dataclasses.replace(model.afterloader, source=source))
    path = tmp_path / f"{model_id}.toml"
    path.write_text(dump_model(fresh))
    return str(path), source


def _records(site: LocalSite) -> list[pydicom.Dataset]:
    out = []
    for entry in site.worklist():
        for uid in entry.outputs:
            ds = site.tms.objects.read(uid)
            if ds is not None and ds.SOPClassUID == codes.RT_BRACHY_TREATMENT_RECORD_STORAGE:
                out.append(ds)
    return out


def _channel_times(record: pydicom.Dataset) -> dict[int, tuple[float, float]]:
    setup = record.TreatmentSessionApplicationSetupSequence[0]
    return {
        int(c.ChannelNumber): (float(c.SpecifiedChannelTotalTime), float(c.DeliveredChannelTotalTime))
        for c in setup.RecordedChannelSequence
    }


def test_hdr_fraction_over_dicom(tmp_path: Path) -> None:
    with LocalSite(tmp_path, [HDR_SPEC], device_options=_fixed_clock) as site:
        site.schedule(sample_brachy_plan("hdr-cylinder"), "HDR1", fractions=1, start=NOW)
        (outcome,) = site.run_until_idle()
        assert outcome.state == codes.STATE_COMPLETED, outcome.reason
        (entry,) = site.worklist()
        assert entry.state == codes.STATE_COMPLETED
        (record,) = _records(site)
    path = tmp_path / "record.dcm"
    record.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    times = _channel_times(record)
    # 14 days of decay: every 0.1 s-rounded dwell x 2^(14.0/73.83) = 1.14052
    assert times[1][1] == pytest.approx(times[1][0])
    assert times[1][0] == pytest.approx(130.6, abs=0.3)


def test_door_interlock_then_continuation_adds_up_to_the_plan(tmp_path: Path) -> None:
    sessions = []

    def options(_ae: str, _request) -> dict:
        sessions.append(1)
        if len(sessions) == 1:  # the first session: the door opens 4 s into dwell 6 of the tandem
            return {
                "engine_hooks": (
                    lambda engine: AfterloaderFaults(engine).open_door(channel=1, dwell=6, into_s=4.0),
                )
            }
        return {}

    machine, source = _fresh_source_model(tmp_path, "microselectron-v3")
    spec = DeviceSpec(machine, "HDR1", "AFTERLOADER1", answers_to="mSelectronHDR")
    with LocalSite(tmp_path, [spec], session_options=options) as site:
        site.schedule(sample_brachy_plan("hdr-cervix", source=source), "HDR1", fractions=1)
        outcomes = site.run_until_idle()
        states = [o.state for o in outcomes]
        assert states == [codes.STATE_CANCELED, codes.STATE_COMPLETED], [o.reason for o in outcomes]
        assert "DOOR" in outcomes[0].reason
        entries = site.worklist()
        (first,) = [e for e in entries if e.delivery_type == codes.DELIVERY_TYPE_TREATMENT]
        (second,) = [e for e in entries if e.delivery_type == codes.DELIVERY_TYPE_CONTINUATION]
        assert first.state == codes.STATE_CANCELED
        assert second.state == codes.STATE_COMPLETED
        assert second.replaces == first.uid
        instruction_ref = next(
            r for r in second.inputs if r.sop_class_uid == codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE
        )
        instruction = read_brachy_instruction(site.tms.objects.read(instruction_ref.sop_instance_uid))
        (task,) = instruction.tasks
        assert task.is_continuation
        assert set(task.continuation) == {1}  # the tandem resumes inside its sixth dwell; the ring is whole
        window = task.continuation[1]
        assert window.end_weight == pytest.approx(175.0)
        assert 8.2 + 12.5 + 15.9 + 17.8 + 18.4 < window.start_weight < 8.2 + 12.5 + 15.9 + 17.8 + 18.4 + 18.1
        records = sorted(
            _records(site),
            key=lambda r: r.TreatmentSessionApplicationSetupSequence[0].TreatmentDeliveryType != "TREATMENT",
        )
    assert len(records) == 2
    assert records[1].TreatmentSessionApplicationSetupSequence[0].TreatmentDeliveryType == "CONTINUATION"
    assert records[0].TreatmentSessionApplicationSetupSequence[0].TreatmentTerminationCode == "DOOR"
    first_times, second_times = (_channel_times(r) for r in records)
    tandem_specified = first_times[1][0]
    assert first_times[1][1] + second_times[1][1] == pytest.approx(tandem_specified, abs=1e-3)
    assert 2 not in first_times  # the ring never started in the first session
    assert second_times[2][1] == pytest.approx(second_times[2][0])
    for index, record in enumerate(records):
        path = tmp_path / f"r{index}.dcm"
        record.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []


def test_pdr_course_over_dicom(tmp_path: Path) -> None:
    def options(_ae: str, _request) -> dict:
        return {"engine_options": {"clock": FastClock(command_poll_s=30.0)}}  # a 24 h course, no commands

    with LocalSite(tmp_path, [PDR_SPEC], device_options=_fixed_clock, session_options=options) as site:
        site.schedule(sample_brachy_plan("pdr-cervix"), "PDR1", fractions=1, start=NOW)
        (outcome,) = site.run_until_idle()
        assert outcome.state == codes.STATE_COMPLETED, outcome.reason
        (record,) = _records(site)
    tandem = record.TreatmentSessionApplicationSetupSequence[0].RecordedChannelSequence[0]
    assert tandem.DeliveredNumberOfPulses == 24
    assert len(tandem.PulseSpecificBrachyControlPointDeliveredSequence) == 24
    assert outcome.session.result.end_time_s > 23 * 3600.0


def test_pdr_continuation_resumes_in_the_interrupted_pulse() -> None:
    # records say: tandem 5.5 of 24 pulses, ring 5 of 24 -> resume in pulse 6: tandem from half its weight
    plan = sample_brachy_plan("pdr-cervix")
    record = pydicom.Dataset()
    setup = pydicom.Dataset()
    setup.CurrentFractionNumber = 1
    channels = []
    for number, share in ((1, 5.5 / 24), (2, 5.0 / 24)):
        channel = pydicom.Dataset()
        channel.ChannelNumber = number
        channel.SpecifiedChannelTotalTime = "2400"
        channel.DeliveredChannelTotalTime = str(2400 * share)
        channels.append(channel)
    setup.RecordedChannelSequence = pydicom.Sequence(channels)
    record.TreatmentSessionApplicationSetupSequence = pydicom.Sequence([setup])
    (task,) = plan_brachy_continuation(plan, [BrachyTask(setup_number=1)], [record], fraction_number=1)
    assert task.continuation_pulse == 6
    assert task.continuation[1].start_weight == pytest.approx(0.5 * 125.0)
    assert task.omitted_channels == ()
    instruction = read_brachy_instruction(build_brachy_instruction(plan, fraction_number=1, tasks=[task]))
    assert instruction.continuation_pulse == 6
    assert instruction.tasks[0].continuation == task.continuation
