"""A frozen clinic for snapshot tests: real engine events up to a chosen simulated time, no network.

Each machine's program is built from a sample plan by the real driver and played by the real engine in
fast mode with a fixed seed; its tracker only receives the events up to ``freeze_s``, so the console shows
the machine exactly as it was at that simulated instant (a frozen clock, no wall time anywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from machine_models import load_model
from simulators.core.bus import EventBus
from simulators.core.engine import DeliveryEngine
from simulators.devices.base import driver_for
from simulators.plans.samples.linac import sample_linac_plan
from tui.clinic import Clinic, new_handle
from tui.snapshot import WorklistLine
from tui.tracker import EventLog

START = datetime(2026, 1, 5, 9, 0, 0)
HDR_START = datetime(2025, 1, 20, 9, 0, 0)  # two weeks after the bundled source's calibration
SEED = 7


def play_into(
    handle,
    plan_ds,
    freeze_s: float,
    *,
    patient: str,
    script: Callable[[DeliveryEngine], None] | None = None,
    answers_to: str | None = None,
    start: datetime = START,
) -> DeliveryEngine:
    """Deliver ``plan_ds`` on the handle's model (fast clock, seed 7) and feed events up to ``freeze_s``."""
    driver = driver_for(handle.model.kind)
    plan = driver.read_plan(plan_ds, "sample plan")
    reasons = driver.check_plan(
        plan,
        handle.model,
        answers_to=answers_to or handle.model.treatment_machine_name,
        require_approved=True,
    )
    assert not reasons, reasons
    timed = {"treatment_time": start} if getattr(driver, "uses_treatment_time", False) else {}
    program = driver.build_program(plan, handle.model, None, **timed)
    bus = EventBus()
    tracker = handle.tracker
    bus.subscribe(lambda e: tracker.on_event(e) if e.time_s <= freeze_s else None)
    engine = DeliveryEngine(
        program, bus=bus, seed=SEED, session_start=start, sample_interval_s=0.5, beam_on_key=True
    )
    tracker.begin_session(
        program,
        patient=patient,
        plan_label=str(plan_ds.RTPlanLabel),
        door_open=False,
        interlocks={},
        session_start=start,
    )
    awaited = []

    def press(event) -> None:  # the operator presses beam on 2 s after each "awaiting beam on"
        if event.__class__.__name__ == "BeamOnAwaited" and event.time_s not in awaited:
            awaited.append(event.time_s)
            engine.schedule_at(event.time_s + 2.0, engine.press_beam_on)

    bus.subscribe(press)
    if script is not None:
        script(engine)
    engine.run()
    return engine


def frozen_clinic(with_afterloader: bool = True) -> Clinic:
    """LINAC1 mid-arc with the beam on; LINAC2 interrupted by a dose interlock; HDR1 if available."""
    log = EventLog()
    linac = load_model("truebeam-millennium120")
    h1 = new_handle("LINAC1", linac, "LINAC1", log)
    h2 = new_handle("LINAC2", linac, "LINAC2", log)
    handles = [h1, h2]
    play_into(h1, sample_linac_plan("vmat", patient_id="RTSIM-101"), 30.0, patient="TRAINING^A (RTSIM-101)")
    h1.tracker.update(
        worklist=(
            WorklistLine("1.2.3.1", "vmat Fx 1/5", "TRAINING^A (RTSIM-101)", "TREATMENT", "20260105090000"),
            WorklistLine(
                "1.2.3.2", "static-mlc Fx 1/5", "TRAINING^B (RTSIM-102)", "TREATMENT", "20260105091000"
            ),
        ),
        selected_uid="1.2.3.1",
        step="RO-62 progress 0 %",
    )

    def dose_interlock(engine: DeliveryEngine) -> None:
        engine.schedule_at(12.0, lambda: engine.interlock("DOS1", latching=True))

    play_into(
        h2,
        sample_linac_plan("step-and-shoot", patient_id="RTSIM-201"),
        20.0,
        patient="TRAINING^C (RTSIM-201)",
        script=dose_interlock,
    )
    if with_afterloader:
        hdr = afterloader_handle(log)
        if hdr is not None:
            handles.append(hdr)
    clinic = Clinic(handles, log=log, speed=10.0, title="frozen clinic")
    return clinic


def afterloader_handle(log: EventLog):
    """HDR1 delivering the sample tandem-and-ring plan, frozen mid-dwell (None without an afterloader)."""
    try:
        driver_for("afterloader")
        from simulators.plans.samples.brachy import sample_brachy_plan

        model = load_model("microselectron-v3")
    except Exception:
        return None
    plan = sample_brachy_plan("hdr-cervix", patient_id="RTSIM-B01", created=HDR_START)
    probe = new_handle("HDR1", model, "HDR1", EventLog())  # a first run gives the session's length
    engine = play_into(probe, plan, 0.0, patient="TRAINING^D (RTSIM-B01)", start=HDR_START)
    total = engine.result.end_time_s if engine.result is not None else 0.0
    handle = new_handle("HDR1", model, "HDR1", log)
    play_into(handle, plan, round(total * 0.4, 1), patient="TRAINING^D (RTSIM-B01)", start=HDR_START)
    return handle
