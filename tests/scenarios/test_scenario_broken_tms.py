"""Deliberately broken TMS doubles make the relevant scenario fail, saying what the TMS did wrong; the
same scenario runs against an external TMS (``--tms``) through the same DICOM checks."""

from __future__ import annotations

import logging
import socket

import pytest

from scenarios.loader import load_scenario
from scenarios.runner import run_scenario
from simulators.dicom import codes
from simulators.dicom.peers import Peer
from simulators.dicom.site import LocalSite
from simulators.dicom.tms.config import TmsConfig
from simulators.dicom.tms.scheduler import ContinuationScheduler
from simulators.dicom.tms.server import TmsServer


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("simulators.dicom.tdd").setLevel(logging.CRITICAL)


def _marks_interrupted_fraction_complete(site: LocalSite) -> None:
    """The double: whenever a device ends a UPS CANCELED, this TMS files it as COMPLETED."""
    store = site.tms.ups
    original = store.change_state

    def change_state(uid, requested, transaction_uid, **kwargs):
        outcome = original(uid, requested, transaction_uid, **kwargs)
        if requested == codes.STATE_CANCELED and outcome.ok:
            ds = store.get(uid)
            ds.ProcedureStepState = codes.STATE_COMPLETED
            store._save(ds)
        return outcome

    store.change_state = change_state


def test_a_tms_that_marks_an_interrupted_fraction_complete_fails_the_interlock_scenario(tmp_path) -> None:
    scenario = load_scenario("linac-interlock-mid-arc")
    result = run_scenario(scenario, work_dir=tmp_path, on_site_started=_marks_interrupted_fraction_complete)
    assert not result.passed
    by_kind = {r.description.split("(")[0]: r for r in result.results}
    state = by_kind["ups_state"]
    assert not state.passed
    assert "the TMS reports COMPLETED, expected CANCELED" in state.message
    assert "marked an interrupted fraction as complete (112.00 of 280.00 MU delivered)" in state.message
    continuation = by_kind["continuation"]
    assert not continuation.passed
    assert "scheduled no CONTINUATION" in continuation.message
    assert "168.00 MU of this fraction would never be delivered" in continuation.message
    assert by_kind["record"].passed  # the device's record is truthful; only the TMS is wrong


def test_a_tms_that_never_schedules_the_continuation_fails_with_the_missing_mu(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ContinuationScheduler, "after_final", lambda self, uid, state: None)
    result = run_scenario(load_scenario("linac-door-open-step-and-shoot"), work_dir=tmp_path)
    failed = [r for r in result.results if not r.passed]
    assert [r.description.split("(")[0] for r in failed] == ["continuation"]
    assert failed[0].message.startswith("the TMS scheduled no CONTINUATION for 'imrt Fx 1' (ended CANCELED")
    assert "67.50 MU of this fraction would never be delivered" in failed[0].message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_against_an_external_tms_the_same_expectations_pass(tmp_path) -> None:
    device_port = _free_port()
    tms = TmsServer(
        TmsConfig(
            data_dir=tmp_path / "their-tms",
            ae_title="THEIRTMS",
            port=0,
            peers=(Peer("LINAC1", "127.0.0.1", device_port),),
            allowed_ae_titles=("RTSIM",),
        )
    )
    tms.start()
    try:
        result = run_scenario(
            load_scenario("network-store-refused"),
            work_dir=tmp_path / "run",
            tms=Peer("THEIRTMS", "127.0.0.1", tms.port),
            device_port_base=device_port,
        )
        stored = tms.objects.instances()
    finally:
        tms.stop()
    assert result.passed, [r.message for r in result.results if not r.passed]
    assert any(i.sop_class_uid == codes.RT_BEAMS_TREATMENT_RECORD_STORAGE for i in stored)
    assert any(e["event"] == "dicom" and e["to"] == "THEIRTMS" for e in result.trace)
