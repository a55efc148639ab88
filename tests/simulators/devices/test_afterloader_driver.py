"""The afterloader driver through the device-agnostic session: refusals, tasks, faults API, imports."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest

from machine_models import DeviceKind, load_model
from simulators.core.events import FaultInjected
from simulators.devices.afterloader_faults import AfterloaderFaults
from simulators.devices.base import driver_for
from simulators.devices.session import DeliverySession, SessionRequest
from simulators.plans.brachy_model import BrachyTask
from simulators.plans.samples.brachy import sample_brachy_plan
from simulators.plans.samples.linac import sample_linac_plan

HDR = load_model("microselectron-v3")
PDR = load_model("microselectron-pdr")
CAL = datetime(2025, 1, 6, 9, 0)


def _session(plan, machine=HDR, **kwargs) -> DeliverySession:
    return DeliverySession(SessionRequest(plan_dataset=plan, machine=machine, session_start=CAL, **kwargs))


def test_driver_is_registered_for_afterloaders() -> None:
    driver = driver_for(DeviceKind.AFTERLOADER)
    assert driver.workitem_code_value == "121735"
    assert driver.uses_treatment_time


def test_linac_plan_on_an_afterloader_is_refused() -> None:
    outcome = _session(sample_linac_plan("vmat")).run()
    assert outcome.refused
    assert "this machine is an afterloader" in outcome.refused_reasons[0]


def test_refusals_come_back_before_any_delivery() -> None:
    outcome = _session(sample_brachy_plan("pdr-cervix"), answers_to="mSelectronPDR").run()
    assert outcome.result is None
    assert any("this unit delivers HDR only" in r for r in outcome.refused_reasons)


def test_task_for_a_missing_setup_is_refused() -> None:
    outcome = _session(sample_brachy_plan("hdr-cylinder"), beam_tasks=(BrachyTask(setup_number=5),)).run()
    assert outcome.refused_reasons == ["plan: delivery instruction names application setup 5, the plan has 1"]


def test_treatment_time_reaches_the_program() -> None:
    request = SessionRequest(
        plan_dataset=sample_brachy_plan("hdr-cylinder"),
        machine=HDR,
        session_start=datetime(2025, 3, 20, 9, 0),
    )
    outcome = DeliverySession(request).run()
    # 73.0 days after calibration: 2^(73/73.83) = 1.98448 -> 114.5 s becomes ~227.2 s after rounding
    assert outcome.result.units[0].delivered_meterset == pytest.approx(227.2, abs=0.3)


def test_fault_placed_in_a_given_pdr_pulse() -> None:
    def hook(engine):
        AfterloaderFaults(engine).timer_discrepancy(channel=2, pulse=3, dwell=1, into_s=0.5)

    outcome = DeliverySession(
        SessionRequest(plan_dataset=sample_brachy_plan("pdr-cervix"), machine=PDR, session_start=CAL),
        engine_hooks=(hook,),
    ).run()
    result = outcome.result
    assert result.termination_code == "TIMER"
    stopped = [u for u in result.units if u.delivered and u.termination_status.value == "MACHINE"]
    assert [u.name for u in stopped] == ["RING 30 pulse 3/24"]
    assert stopped[0].delivered_meterset == pytest.approx(0.5)
    assert sum(1 for u in result.units if u.delivered) == 6  # pulses 1, 2 and 3 (tandem, ring)
    assert any(isinstance(e, FaultInjected) and e.name == "timer_discrepancy" for e in result.events)


def test_at_runs_any_action_at_a_dwell() -> None:
    seen = []

    def hook(engine):
        AfterloaderFaults(engine).at(lambda: seen.append(engine.env.now), channel=1, dwell=2, into_s=1.0)

    DeliverySession(
        SessionRequest(plan_dataset=sample_brachy_plan("hdr-cylinder"), machine=HDR, session_start=CAL),
        engine_hooks=(hook,),
    ).run()
    # indexer 2 + check cable 2 x 4.527273 + out 4.553273 + dwell 1 22.4 + step 0.041152 + 1.0 into dwell 2
    assert seen == [pytest.approx(2.0 + 2 * 4.527273 + 4.553273 + 22.4 + 0.041152 + 1.0, abs=1e-4)]


@pytest.mark.parametrize(
    "module",
    [
        "machine_models.decay",
        "simulators.devices.afterloader",
        "simulators.devices.afterloader_driver",
        "simulators.devices.afterloader_faults",
        "simulators.records.brachy_record",
        "simulators.plans.brachy_capability",
    ],
)
def test_afterloader_modules_keep_the_dependency_direction(module: str) -> None:
    forbidden = ["pynetdicom", "textual", "tui"] + (
        ["simpy", "pydicom"] if module.startswith("machine") else []
    )
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_a_helper_made_mid_session_targets_the_right_unit() -> None:
    def hook(engine):
        # made while pulse 2 runs: the fault must still find pulse 3's ring
        engine.schedule_at(
            3700.0,
            lambda: AfterloaderFaults(engine).timer_discrepancy(channel=2, pulse=3, dwell=1, into_s=0.5),
        )

    outcome = DeliverySession(
        SessionRequest(plan_dataset=sample_brachy_plan("pdr-cervix"), machine=PDR, session_start=CAL),
        engine_hooks=(hook,),
    ).run()
    stopped = [u for u in outcome.result.units if u.delivered and u.termination_status.value == "MACHINE"]
    assert [u.name for u in stopped] == ["RING 30 pulse 3/24"]
