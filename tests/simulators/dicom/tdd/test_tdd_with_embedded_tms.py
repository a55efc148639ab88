"""The device against rtsim's embedded TMS (UPS SCP + separate OST AE), both on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime

import pydicom
import pytest
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import UnifiedProcedureStepPull, UnifiedProcedureStepPush
from rtsim_testdata import IHE_RO_DIR
from tdd_fakes import FakeDeliver, machine

from simulators.dicom import codes
from simulators.dicom.bdi import build_bdi
from simulators.dicom.peers import Peer
from simulators.dicom.tdd import Device, DeviceConfig, OutcomeState, RetryPolicy
from simulators.dicom.tms.config import TmsConfig
from simulators.dicom.tms.scheduler import InputRef, ups_dataset
from simulators.dicom.tms.server import TmsServer

ARTI_STATIC = (
    IHE_RO_DIR / "ARTI" / "Datasets" / "RTAdvanced" / "BasicStaticBeam" / "RTPlanBasicStaticBeam.dcm"
)
STATION = "LINAC1"


@pytest.fixture
def site(tmp_path):
    """A device (AE TDD1) and the embedded TMS (AE TMS, OST on its own AE and port) that know each other."""
    deliver = FakeDeliver()
    placeholder = Peer("TMS", "127.0.0.1", 1)
    config = DeviceConfig(
        ae_title="TDD1",
        station=STATION,
        machine=machine(),
        tms=placeholder,
        out_dir=tmp_path / "device",
        retry=RetryPolicy(attempts=2, first_delay_s=0.01),
    )
    device = Device(config, deliver=deliver, sleep=lambda s: None).start()
    tms = TmsServer(
        TmsConfig(
            data_dir=tmp_path / "tms",
            port=0,
            ost_ae_title="OST",
            ost_port=0,
            peers=(device.peer,),
            allowed_ae_titles=("TDD1", "TMSUI"),
        )
    )
    tms.start()
    # the TMS's ports are known only now: point the device at them
    device.config = dataclasses.replace(
        config,
        tms=Peer("TMS", "127.0.0.1", tms.port),
        peers={"OST": Peer("OST", "127.0.0.1", tms.ost_port)},
    )
    yield device, tms, deliver
    device.close()
    tms.stop()


def schedule(tms: TmsServer, plan: Dataset, fraction: int = 1) -> str:
    bdi = build_bdi(plan, fraction_number=fraction)
    tms.objects.store_dataset(plan)
    tms.objects.store_dataset(bdi)
    inputs = [
        InputRef(
            str(bdi.SOPClassUID),
            str(bdi.SOPInstanceUID),
            str(bdi.StudyInstanceUID),
            str(bdi.SeriesInstanceUID),
            "TMS",
        ),
        InputRef(
            str(plan.SOPClassUID),
            str(plan.SOPInstanceUID),
            str(plan.StudyInstanceUID),
            str(plan.SeriesInstanceUID),
            "OST",
        ),
    ]
    outcome = tms.ups.create(
        ups_dataset(plan, station=STATION, inputs=inputs, label=f"Fx {fraction}", start=datetime.now())
    )
    assert outcome.ok, outcome.comment
    return str(outcome.dataset.SOPInstanceUID)


def approved_plan() -> Dataset:
    plan = pydicom.dcmread(ARTI_STATIC, force=True)
    plan.ApprovalStatus = "APPROVED"
    return plan


def test_treatment_completes_against_the_embedded_tms(site):
    device, tms, deliver = site
    plan = approved_plan()
    ups = schedule(tms, plan)
    outcome = device.run_once()[0]
    assert outcome.state == OutcomeState.COMPLETED, outcome.reason
    stored = tms.ups.get(ups)
    assert stored.ProcedureStepState == codes.STATE_COMPLETED
    assert tms.objects.read(outcome.record_uid) is not None  # RO-63 reached the OST's store
    out = stored.UnifiedProcedureStepPerformedProcedureSequence[0].OutputInformationSequence[0]
    assert out.DICOMRetrievalSequence[0].RetrieveAETitle == "OST"  # where the plan came from
    assert out.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == outcome.record_uid
    assert [t.beam_number for t in deliver.requests[0].beam_tasks] == [1, 2]
    assert device.run_once() == []  # nothing left


def test_cancel_request_then_the_tms_continuation_is_delivered_from_where_it_stopped(site):
    device, tms, deliver = site
    plan = approved_plan()
    ups = schedule(tms, plan, fraction=4)
    deliver.block_beam = 1
    outcomes: list = []
    runner = threading.Thread(target=lambda: outcomes.extend(device.run_once()))
    runner.start()
    assert deliver.beam_started.wait(20)
    ui = AE(ae_title="TMSUI")
    ui.add_requested_context(UnifiedProcedureStepPull)
    assoc = ui.associate("127.0.0.1", tms.port, ae_title="TMS")
    info = Dataset()
    info.ReasonForCancellation = "couch collision risk"
    status, _ = assoc.send_n_action(info, 2, UnifiedProcedureStepPush, ups, meta_uid=UnifiedProcedureStepPull)
    assoc.release()
    assert status.Status == 0x0000
    runner.join(30)
    assert not runner.is_alive()
    assert outcomes[0].state == OutcomeState.CANCELED
    assert "couch collision risk" in outcomes[0].reason
    assert tms.ups.get(ups).ProcedureStepState == codes.STATE_CANCELED

    # the TMS scheduled a CONTINUATION (beam 1 from 100 MU, beam 2 whole) for fraction 4
    deliver.block_beam = None
    second = device.run_once()
    assert [o.state for o in second] == [OutcomeState.COMPLETED]
    tasks = deliver.requests[-1].beam_tasks
    assert [(t.beam_number, t.delivery_type, t.fraction_number) for t in tasks] == [
        (1, "CONTINUATION", 4),
        (2, "TREATMENT", 4),
    ]
    assert tasks[0].start_meterset_mu == pytest.approx(100.0)
    assert tasks[0].end_meterset_mu == pytest.approx(200.0)
    assert deliver.requests[-1].referenced_record_uids == (outcomes[0].record_uid,)
