"""The device loop with the real delivery session (plan reader, capability check, engine, record writer)."""

from __future__ import annotations

from datetime import datetime

import pytest
from dciodvfy import dciodvfy_errors
from tdd_fakes import FakePeer, make_workitem

from machine_models.loader import load_model
from simulators.dicom.bdi import build_bdi
from simulators.dicom.peers import Peer
from simulators.dicom.tdd import Device, DeviceConfig, OutcomeState, RetryPolicy
from simulators.plans.samples.linac import sample_linac_plan

session = pytest.importorskip("simulators.devices.session")
if not hasattr(session, "DeliverySession"):  # pragma: no cover (the contract is being written)
    pytest.skip("simulators.devices.session.DeliverySession not available yet", allow_module_level=True)

NOW = datetime(2026, 3, 2, 14, 0, 0)


def test_sample_plan_delivered_by_the_real_session_record_at_the_ost_passes_dciodvfy(tmp_path):
    machine = load_model("truebeam-millennium120")
    plan = sample_linac_plan("static-mlc", machine_name=machine.treatment_machine_name)
    bdi = build_bdi(plan, fraction_number=2)
    tms, ost = FakePeer("TMS"), FakePeer("OST")
    try:
        ost.objects[str(plan.SOPInstanceUID)] = plan
        tms.objects[str(bdi.SOPInstanceUID)] = bdi
        ups = tms.add_workitem(
            make_workitem(station="TB1", start=NOW, plan=plan, plan_ae="OST", bdi=bdi, bdi_ae="TMS")
        )
        config = DeviceConfig(
            ae_title="TRUEBEAM1",
            station="TB1",
            machine=machine,
            tms=Peer("TMS", "127.0.0.1", tms.port),
            peers={"OST": Peer("OST", "127.0.0.1", ost.port)},
            out_dir=tmp_path / "out",
            retry=RetryPolicy(attempts=1),
        )
        with Device(config, now=lambda: NOW) as device:  # default deliver: the real DeliverySession
            for peer in (tms, ost):
                peer.destinations["TRUEBEAM1"] = ("127.0.0.1", device.port)
            outcome = device.run_once()[0]
    finally:
        tms.close()
        ost.close()
    assert outcome.state == OutcomeState.COMPLETED, outcome.reason
    assert tms.state(ups) == "COMPLETED"
    record = ost.stored[outcome.record_uid]
    beam = record.TreatmentSessionBeamSequence[0]
    assert beam.TreatmentTerminationStatus == "NORMAL"
    assert int(beam.CurrentFractionNumber) == 2  # the BDI's fraction reached the record
    assert float(beam.DeliveredPrimaryMeterset) == pytest.approx(float(beam.SpecifiedPrimaryMeterset))
    assert dciodvfy_errors(outcome.record_path) == []
