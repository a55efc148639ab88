"""The device's TDW-II loop (RO-58..RO-65) against a strict fake TMS/OST on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import socket
import threading
from datetime import datetime
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import UnifiedProcedureStepPull, UnifiedProcedureStepPush, UnifiedProcedureStepWatch
from rtsim_testdata import IHE_RO_DIR
from tdd_fakes import FakeDeliver, FakePeer, machine, make_bdi, make_workitem

from simulators.dicom.bdi import build_bdi
from simulators.dicom.peers import Peer
from simulators.dicom.tdd import (
    Device,
    DeviceConfig,
    OutcomeState,
    RetryPolicy,
    TmsUnavailableError,
    run_device,
)
from simulators.dicom.tdd.scu import Timeouts
from simulators.plans.model import BeamTask

NOW = datetime(2026, 3, 2, 9, 30, 0)
TDW = IHE_RO_DIR / "TDW-II" / "Datasets" / "TDW" / "UPSData"
ARTI_STATIC = (
    IHE_RO_DIR / "ARTI" / "Datasets" / "RTAdvanced" / "BasicStaticBeam" / "RTPlanBasicStaticBeam.dcm"
)
STATION = "LINAC1"


class SimulatedCrash(BaseException):
    """Stands for the process dying at a checkpoint (nothing after it runs in the real world)."""


@pytest.fixture
def peers():
    tms = FakePeer("TMS")
    ost = FakePeer("OST")
    yield tms, ost
    tms.close()
    ost.close()


def tdw_plan_and_bdi() -> tuple[Dataset, Dataset]:
    plan = pydicom.dcmread(TDW / "RTPlan.dcm", force=True)
    bdi = pydicom.dcmread(TDW / "RTBeamsDeliveryInstruction.dcm", force=True)
    return plan, bdi


def arti_plan(approved: bool) -> Dataset:
    plan = pydicom.dcmread(ARTI_STATIC, force=True)
    if approved:
        plan.ApprovalStatus = "APPROVED"
    return plan


def schedule(tms: FakePeer, ost: FakePeer, plan: Dataset, bdi: Dataset | None, **kw) -> str:
    ost.objects[str(plan.SOPInstanceUID)] = plan
    if bdi is not None:
        tms.objects[str(bdi.SOPInstanceUID)] = bdi
    item = make_workitem(station=STATION, start=NOW, plan=plan, plan_ae="OST", bdi=bdi, bdi_ae="TMS", **kw)
    return tms.add_workitem(item)


def make_device(
    tmp: Path,
    tms: FakePeer,
    ost: FakePeer,
    name: str = "TDD1",
    deliver=None,
    sleeps=None,
    checkpoint=None,
    journal: Path | None = None,
    **cfg,
) -> Device:
    config = DeviceConfig(
        ae_title=name,
        station=STATION,
        machine=machine(),
        tms=Peer("TMS", "127.0.0.1", tms.port),
        peers={"OST": Peer("OST", "127.0.0.1", ost.port)},
        out_dir=tmp / name / "out",
        journal_dir=journal or tmp / name / "journal",
        retry=RetryPolicy(attempts=3, first_delay_s=0.5),
        timeouts=Timeouts(connection_s=2, acse_s=5, dimse_s=10, network_s=10),
        operator_name="Test^Therapist",
        **cfg,
    )
    device = Device(
        config,
        deliver=deliver if deliver is not None else FakeDeliver(),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        now=lambda: NOW,
        checkpoint=checkpoint,
    ).start()
    for peer in (tms, ost):
        peer.destinations[name] = ("127.0.0.1", device.port)
    return device


def progress_values(tms: FakePeer, ups: str) -> list[float]:
    values = []
    for req in tms.of_kind("N-SET"):
        if req.ups_uid == ups and "ProcedureStepProgressInformationSequence" in req.dataset:
            values.append(
                float(req.dataset.ProcedureStepProgressInformationSequence[0].ProcedureStepProgress)
            )
    return values


def beams_in_progress(tms: FakePeer, ups: str) -> list[int]:
    beams = []
    for req in tms.of_kind("N-SET"):
        performed = req.dataset.get("UnifiedProcedureStepPerformedProcedureSequence")
        if req.ups_uid != ups or not performed:
            continue
        for param in performed[0].get("PerformedProcessingParametersSequence") or []:
            beams.append(int(param.TextValue))
    return beams


def final_nset(tms: FakePeer, ups: str) -> Dataset:
    return [r for r in tms.of_kind("N-SET") if r.ups_uid == ups][-1].dataset


def journal_is_empty(device: Device) -> bool:
    return not device.journal.claims() and not device.journal.pending_records()


# ---------------------------------------------------------------------------------------------------
def test_treatment_with_the_ihe_ro_tdw_ii_objects_completes(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    ups = schedule(tms, ost, plan, bdi)
    deliver = FakeDeliver()
    with make_device(tmp_path, tms, ost, deliver=deliver) as device:
        outcomes = device.run_once()

    assert [o.state for o in outcomes] == [OutcomeState.COMPLETED]
    outcome = outcomes[0]
    assert tms.state(ups) == "COMPLETED"
    assert journal_is_empty(device)
    # the BDI was obeyed: beam 1, fraction 1 (the IHE-RO BDI), and the plan came from the OST
    assert deliver.requests[0].beam_tasks == (BeamTask(beam_number=1, fraction_number=1),)
    assert deliver.requests[0].plan_dataset.SOPInstanceUID == plan.SOPInstanceUID
    assert [r.calling_ae for r in ost.of_kind("C-MOVE")] == ["TDD1"]
    assert str(tms.of_kind("C-MOVE")[0].dataset.SOPInstanceUID) == str(bdi.SOPInstanceUID)
    # RO-58 on the Pull context, matching station, state, date range and workitem code
    find = tms.of_kind("C-FIND")[0]
    assert find.context_uid == UnifiedProcedureStepPull
    q = find.dataset
    assert q.ProcedureStepState == "SCHEDULED"
    assert q.ScheduledStationNameCodeSequence[0].CodeValue == STATION
    assert q.ScheduledWorkitemCodeSequence[0].CodeValue == "121726"
    assert q.ScheduledProcedureStepStartDateTime == "20260302000000-20260302235959"
    # RO-60 claim: Push class on the Pull context, with a Transaction UID
    claim = tms.of_kind("N-ACTION", 1)[0]
    assert (claim.context_uid, claim.requested_class_uid) == (
        UnifiedProcedureStepPull,
        UnifiedProcedureStepPush,
    )
    assert claim.dataset.ProcedureStepState == "IN PROGRESS"
    assert claim.dataset.TransactionUID == outcome.transaction_uid
    # Watch subscription with the device as Receiving AE
    sub = tms.of_kind("N-ACTION", 3)[0]
    assert sub.context_uid == UnifiedProcedureStepWatch
    assert sub.dataset.ReceivingAE == "TDD1"
    # RO-62: 0 % first, beam 1 in progress, 100 % before the final update
    values = progress_values(tms, ups)
    assert values[0] == 0.0
    assert values == sorted(values)
    assert values[-1] == 100.0
    assert beams_in_progress(tms, ups)[0] == 1
    first_progress = tms.of_kind("N-SET")[0].dataset
    assert first_progress.UnifiedProcedureStepPerformedProcedureSequence[0].OutputInformationSequence == []
    # one RO-62 per step: the start (0 %, beam 1) and the end (100 %), then RO-64 (also 100 %)
    assert values == [0.0, 100.0, 100.0]
    assert beams_in_progress(tms, ups) == [1]
    # RO-63: the record at the OST (where the plan came from), sent with file meta
    assert list(ost.stored) == [outcome.record_uid]
    assert "TransferSyntaxUID" in ost.stored[outcome.record_uid].file_meta
    assert outcome.record_path is not None
    assert outcome.record_path.is_file()
    # RO-64: no SOP Class/Instance UID or state; output references the record at the OST
    final = final_nset(tms, ups)
    for keyword in ("SOPClassUID", "SOPInstanceUID", "ProcedureStepState"):
        assert keyword not in final
    assert final.TransactionUID == outcome.transaction_uid
    performed = final.UnifiedProcedureStepPerformedProcedureSequence[0]
    assert performed.PerformedStationNameCodeSequence[0].CodeValue == STATION
    assert performed.PerformedWorkitemCodeSequence[0].CodeValue == "121726"
    assert performed.PerformedProcedureStepStartDateTime == "20260302093000"
    assert performed.ActualHumanPerformersSequence[0].HumanPerformerName == "Test^Therapist"
    out = performed.OutputInformationSequence[0]
    assert out.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == outcome.record_uid
    assert out.ReferencedSOPSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.481.4"
    assert out.DICOMRetrievalSequence[0].RetrieveAETitle == "OST"
    # RO-65 COMPLETED with the same Transaction UID, then unsubscribe
    end = tms.of_kind("N-ACTION", 1)[-1]
    assert (end.dataset.ProcedureStepState, end.dataset.TransactionUID) == (
        "COMPLETED",
        outcome.transaction_uid,
    )
    assert end.status == 0x0000
    assert len(tms.of_kind("N-ACTION", 4)) == 1
    # the final update repeats the last progress report's description (no new Progress report); the
    # device unsubscribes after RO-65
    last_progress = tms.of_kind("N-SET")[-2].dataset.ProcedureStepProgressInformationSequence[0]
    final_progress = final.ProcedureStepProgressInformationSequence[0]
    assert final_progress.ProcedureStepProgressDescription == last_progress.ProcedureStepProgressDescription
    order = [(r.kind, r.action_type) for r in tms.requests if r.kind in ("N-SET", "N-ACTION")]
    assert order[-3:] == [("N-SET", 0), ("N-ACTION", 1), ("N-ACTION", 4)]


@pytest.mark.parametrize(
    ("tasks", "omitted", "expected"),
    [
        ([BeamTask(2, fraction_number=3), BeamTask(1, fraction_number=3)], (), [2, 1]),
        ([BeamTask(2, fraction_number=3)], ((1, "ALREADY_TREATED"),), [2]),
    ],
    ids=["order-2-then-1", "beam-1-omitted"],
)
def test_beam_task_order_and_omitted_beams_are_obeyed(peers, tmp_path, tasks, omitted, expected):
    tms, ost = peers
    plan = arti_plan(approved=True)
    ups = schedule(tms, ost, plan, build_bdi(plan, fraction_number=3, beam_tasks=tasks, omitted=omitted))
    deliver = FakeDeliver()
    with make_device(tmp_path, tms, ost, deliver=deliver) as device:
        assert device.run_once()[0].state == OutcomeState.COMPLETED
    assert [t.beam_number for t in deliver.requests[0].beam_tasks] == expected
    assert {t.fraction_number for t in deliver.requests[0].beam_tasks} == {3}
    assert list(dict.fromkeys(beams_in_progress(tms, ups))) == expected


def test_a_beam_both_instructed_and_omitted_is_not_delivered(peers, tmp_path):
    tms, ost = peers
    plan = arti_plan(approved=True)
    schedule(tms, ost, plan, make_bdi(plan, beams=[1, 2], omitted=(1,)))
    deliver = FakeDeliver()
    with make_device(tmp_path, tms, ost, deliver=deliver) as device:
        assert device.run_once()[0].state == OutcomeState.COMPLETED
    assert [t.beam_number for t in deliver.requests[0].beam_tasks] == [2]


def test_continuation_bounds_and_previous_record_reach_the_session(peers, tmp_path):
    tms, ost = peers
    plan, _ = tdw_plan_and_bdi()
    task = BeamTask(
        1, "CONTINUATION", start_meterset_mu=46.27914, end_meterset_mu=509.07073, fraction_number=3
    )
    bdi = build_bdi(plan, fraction_number=3, beam_tasks=[task])
    ups_ds = make_workitem(station=STATION, start=NOW, plan=plan, plan_ae="OST", bdi=bdi, bdi_ae="TMS")
    previous = pydicom.dcmread(TDW / "Interupted" / "RTRecord1.dcm", force=True)
    extra = Dataset()
    extra.TypeOfInstances = "DICOM"
    extra.StudyInstanceUID = previous.StudyInstanceUID
    extra.SeriesInstanceUID = previous.SeriesInstanceUID
    ref = Dataset()
    ref.ReferencedSOPClassUID = previous.SOPClassUID
    ref.ReferencedSOPInstanceUID = previous.SOPInstanceUID
    extra.ReferencedSOPSequence = [ref]
    ups_ds.InputInformationSequence.append(extra)
    ost.objects[str(plan.SOPInstanceUID)] = plan
    tms.objects[str(bdi.SOPInstanceUID)] = bdi
    tms.add_workitem(ups_ds)
    deliver = FakeDeliver()
    with make_device(tmp_path, tms, ost, deliver=deliver) as device:
        assert device.run_once()[0].state == OutcomeState.COMPLETED
    request = deliver.requests[0]
    assert request.beam_tasks == (task,)
    assert request.referenced_record_uids == (str(previous.SOPInstanceUID),)


def test_refused_plan_is_canceled_with_the_reason_and_no_record(peers, tmp_path):
    tms, ost = peers
    plan = arti_plan(approved=False)  # every ARTI plan is UNAPPROVED
    ups = schedule(tms, ost, plan, build_bdi(plan, fraction_number=1))
    with make_device(tmp_path, tms, ost) as device:
        outcome = device.run_once()[0]
    assert outcome.state == OutcomeState.CANCELED
    assert tms.state(ups) == "CANCELED"
    assert "Approval Status (300E,0002) is UNAPPROVED" in outcome.refused_reasons[0]
    assert not ost.of_kind("C-STORE")
    final = final_nset(tms, ups)
    assert "UnifiedProcedureStepPerformedProcedureSequence" not in final  # cancel without radiation
    progress = final.ProcedureStepProgressInformationSequence[0]
    assert float(progress.ProcedureStepProgress) == 0.0
    assert "UNAPPROVED" in progress.ReasonForCancellation
    assert progress.ProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue == "110527"
    assert progress.ProcedureStepCancellationDateTime == "20260302093000"
    assert set(progress_values(tms, ups)) == {0.0}
    assert journal_is_empty(device)


def test_bdi_for_another_plan_is_refused(peers, tmp_path):
    tms, ost = peers
    plan = arti_plan(approved=True)
    other = arti_plan(approved=True)
    other.SOPInstanceUID = "1.2.3.4.5.6.7"
    ups = schedule(tms, ost, plan, build_bdi(other, fraction_number=1))
    deliver = FakeDeliver()
    with make_device(tmp_path, tms, ost, deliver=deliver) as device:
        outcome = device.run_once()[0]
    assert outcome.state == OutcomeState.CANCELED
    assert "1.2.3.4.5.6.7" in outcome.reason
    assert "Referenced RT Plan Sequence (300C,0002)" in outcome.reason
    assert not deliver.requests  # never delivered
    assert tms.state(ups) == "CANCELED"


def test_cancel_request_mid_delivery_stops_the_beam_and_cancels_with_the_partial_record(peers, tmp_path):
    tms, ost = peers
    plan = arti_plan(approved=True)
    ups = schedule(tms, ost, plan, build_bdi(plan, fraction_number=1))
    deliver = FakeDeliver(block_beam=1)
    with make_device(tmp_path, tms, ost, deliver=deliver) as device:
        outcomes: list = []
        runner = threading.Thread(target=lambda: outcomes.extend(device.run_once()))
        runner.start()
        assert deliver.beam_started.wait(20)
        # the TMS user asks for a cancel (N-ACTION type 2); the TMS tells its subscriber (the device)
        ui = AE(ae_title="TMSUI")
        ui.add_requested_context(UnifiedProcedureStepPull)
        assoc = ui.associate("127.0.0.1", tms.port, ae_title="TMS")
        info = Dataset()
        info.ReasonForCancellation = "patient unwell"
        status, _ = assoc.send_n_action(
            info, 2, UnifiedProcedureStepPush, ups, meta_uid=UnifiedProcedureStepPull
        )
        assoc.release()
        assert status.Status == 0x0000
        runner.join(30)
        assert not runner.is_alive()
    outcome = outcomes[0]
    assert outcome.state == OutcomeState.CANCELED
    assert tms.state(ups) == "CANCELED"
    assert "patient unwell" in outcome.reason
    assert "OPERATOR" in outcome.reason
    record = ost.stored[outcome.record_uid]  # the partial record reached the OST
    beams = record.TreatmentSessionBeamSequence
    assert beams[0].TreatmentTerminationStatus == "OPERATOR"
    assert float(beams[0].DeliveredPrimaryMeterset) == pytest.approx(100.0)
    final = final_nset(tms, ups)
    progress = final.ProcedureStepProgressInformationSequence[0]
    assert float(progress.ProcedureStepProgress) == pytest.approx(25.0)  # 100 of 400 MU
    assert progress.ProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue == "110513"
    out = final.UnifiedProcedureStepPerformedProcedureSequence[0].OutputInformationSequence[0]
    assert out.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == outcome.record_uid


def test_machine_interlock_cancels_with_equipment_failure(peers, tmp_path):
    tms, ost = peers
    plan = arti_plan(approved=True)
    ups = schedule(tms, ost, plan, build_bdi(plan, fraction_number=1))
    with make_device(tmp_path, tms, ost, deliver=FakeDeliver(interrupt_beam=2)) as device:
        outcome = device.run_once()[0]
    assert outcome.state == OutcomeState.CANCELED
    assert "termination MACHINE code INTLK-1" in outcome.reason
    progress = final_nset(tms, ups).ProcedureStepProgressInformationSequence[0]
    assert progress.ProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue == "110501"
    assert float(progress.ProcedureStepProgress) == pytest.approx(75.0)
    assert 100.0 not in progress_values(tms, ups)


def test_failed_store_keeps_the_record_and_sends_it_on_the_next_loop(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    ups = schedule(tms, ost, plan, bdi)
    ost.store_failures = 1
    with make_device(tmp_path, tms, ost) as device:
        first = device.run_once()
        assert [o.state for o in first] == [OutcomeState.PENDING]
        assert "not yet stored at OST" in first[0].reason
        assert tms.state(ups) == "IN PROGRESS"  # not finished before the record is really at the OST
        assert [p.sop_instance_uid for p in device.journal.pending_records()] == [first[0].record_uid]
        assert not any(r.dataset.get("ProcedureStepState") == "COMPLETED" for r in tms.of_kind("N-ACTION", 1))

        second = device.run_once()  # the OST accepts now
    assert [(o.state, o.recovered) for o in second] == [(OutcomeState.COMPLETED, True)]
    assert list(ost.stored) == [first[0].record_uid]
    assert tms.state(ups) == "COMPLETED"
    assert journal_is_empty(device)
    out = final_nset(tms, ups).UnifiedProcedureStepPerformedProcedureSequence[0].OutputInformationSequence[0]
    assert out.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first[0].record_uid


def crash_at(point: str):
    def checkpoint(name: str, ups: str) -> None:
        if name == point:
            raise SimulatedCrash(name)

    return checkpoint


def test_crash_after_beam_off_restart_cancels_with_the_journaled_partial_record(peers, tmp_path):
    tms, ost = peers
    plan = arti_plan(approved=True)
    ups = schedule(tms, ost, plan, build_bdi(plan, fraction_number=1))
    journal = tmp_path / "journal"
    crashed = make_device(
        tmp_path,
        tms,
        ost,
        deliver=FakeDeliver(interrupt_beam=1),
        checkpoint=crash_at("record_journaled"),
        journal=journal,
    )
    with crashed, pytest.raises(SimulatedCrash):
        crashed.run_once()
    assert tms.state(ups) == "IN PROGRESS"
    assert not ost.stored

    with make_device(tmp_path, tms, ost, deliver=FakeDeliver(), journal=journal) as restarted:
        outcomes = restarted.run_once()
    assert [(o.ups_uid, o.state, o.recovered) for o in outcomes] == [(ups, OutcomeState.CANCELED, True)]
    assert tms.state(ups) == "CANCELED"
    record_uid = outcomes[0].record_uid
    assert record_uid in ost.stored
    assert ost.stored[record_uid].TreatmentSessionBeamSequence[0].TreatmentTerminationStatus == "MACHINE"
    final = final_nset(tms, ups)
    assert final.TransactionUID == tms.of_kind("N-ACTION", 1)[0].dataset.TransactionUID
    out = final.UnifiedProcedureStepPerformedProcedureSequence[0].OutputInformationSequence[0]
    assert out.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == record_uid
    assert journal_is_empty(restarted)


def test_crash_during_delivery_without_record_restart_cancels_truthfully(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    ups = schedule(tms, ost, plan, bdi)
    journal = tmp_path / "journal"
    crashed = make_device(tmp_path, tms, ost, checkpoint=crash_at("delivering"), journal=journal)
    with crashed, pytest.raises(SimulatedCrash):
        crashed.run_once()
    with make_device(tmp_path, tms, ost, journal=journal) as restarted:
        outcome = restarted.run_once()[0]
    assert (outcome.state, outcome.recovered) == (OutcomeState.CANCELED, True)
    assert "no treatment record was written" in outcome.reason
    final = final_nset(tms, ups)
    assert "UnifiedProcedureStepPerformedProcedureSequence" not in final
    assert (
        final.ProcedureStepProgressInformationSequence[0]
        .ProcedureStepDiscontinuationReasonCodeSequence[0]
        .CodeValue
        == "110501"
    )
    assert tms.state(ups) == "CANCELED"


def test_crash_between_journal_and_claim_is_dropped_when_the_claim_never_happened(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    ups = schedule(tms, ost, plan, bdi)
    journal = tmp_path / "journal"
    crashed = make_device(tmp_path, tms, ost, checkpoint=crash_at("before_claim"), journal=journal)
    with crashed, pytest.raises(SimulatedCrash):
        crashed.run_once()
    assert len(crashed.journal.claims()) == 1  # the Transaction UID was on disk before the N-ACTION
    with make_device(tmp_path, tms, ost, journal=journal) as restarted:
        outcomes = restarted.run_once()
    # recovery found the UPS still SCHEDULED (0xC310), dropped the entry, then delivered it normally
    assert [(o.state, o.recovered) for o in outcomes] == [
        (OutcomeState.NOT_CLAIMED, True),
        (OutcomeState.COMPLETED, False),
    ]
    assert tms.state(ups) == "COMPLETED"


def test_two_devices_claiming_the_same_item_exactly_one_wins(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    ups = schedule(tms, ost, plan, bdi)
    barrier = threading.Barrier(2, timeout=20)

    def both_ready(name: str, ups_uid: str) -> None:
        if name == "before_claim":
            barrier.wait()  # both have queried and retrieved the plan: now both claim

    devices = [make_device(tmp_path, tms, ost, name=n, checkpoint=both_ready) for n in ("TDD1", "TDD2")]
    results: dict[str, list] = {}
    threads = [
        threading.Thread(target=lambda d=d: results.setdefault(d.config.ae_title, d.run_once()))
        for d in devices
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for d in devices:
        d.close()
    states = sorted(results[name][0].state for name in ("TDD1", "TDD2"))
    assert states == [OutcomeState.COMPLETED, OutcomeState.NOT_CLAIMED]
    loser = next(r[0] for r in results.values() if r[0].state == OutcomeState.NOT_CLAIMED)
    assert "0xC302" in loser.reason
    claims = [r for r in tms.of_kind("N-ACTION", 1) if r.dataset.ProcedureStepState == "IN PROGRESS"]
    assert sorted(r.status for r in claims) == [0x0000, 0xC302]
    assert tms.state(ups) == "COMPLETED"
    assert all(journal_is_empty(d) for d in devices)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_tms_port_is_retried_with_backoff_then_reported_in_one_line(tmp_path):
    port = closed_port()
    sleeps: list[float] = []
    config = DeviceConfig(
        ae_title="TDD1",
        station=STATION,
        machine=machine(),
        tms=Peer("TMS", "127.0.0.1", port),
        out_dir=tmp_path,
        retry=RetryPolicy(attempts=4, first_delay_s=0.5, factor=2.0, max_delay_s=1.5),
    )
    device = Device(config, deliver=FakeDeliver(), sleep=sleeps.append, now=lambda: NOW)
    with device, pytest.raises(TmsUnavailableError) as caught:
        device.run_once()
    assert sleeps == [0.5, 1.0, 1.5]
    message = str(caught.value)
    assert f"TMS@127.0.0.1:{port}" in message
    assert "RO-58 worklist query" in message
    assert "4 attempt(s)" in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_run_device_once_raises_a_clear_error_and_continuous_mode_keeps_polling(tmp_path):
    port = closed_port()
    config = DeviceConfig(
        ae_title="TDD1",
        station=STATION,
        machine=machine(),
        tms=Peer("TMS", "127.0.0.1", port),
        out_dir=tmp_path,
        retry=RetryPolicy(attempts=1),
        poll_interval_s=0.01,
    )
    with pytest.raises(TmsUnavailableError, match=f"TMS@127.0.0.1:{port}"):
        run_device(config, once=True, deliver=FakeDeliver())

    stop = threading.Event()
    polls = []

    class CountingDevice(Device):
        def run_once(self):
            polls.append(1)
            if len(polls) == 3:
                stop.set()
            return super().run_once()

    with CountingDevice(config, deliver=FakeDeliver(), now=lambda: NOW) as device:
        assert device.run(stop) == []
    assert len(polls) == 3


def test_plan_at_an_unknown_ae_is_not_claimed(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    ost.objects[str(plan.SOPInstanceUID)] = plan
    tms.objects[str(bdi.SOPInstanceUID)] = bdi
    ups = tms.add_workitem(
        make_workitem(station=STATION, start=NOW, plan=plan, plan_ae="ARCHIVE9", bdi=bdi, bdi_ae="TMS")
    )
    with make_device(tmp_path, tms, ost) as device:
        outcome = device.run_once()[0]
    assert outcome.state == OutcomeState.NOT_CLAIMED
    assert "'ARCHIVE9' is not in the device's peer table" in outcome.reason
    assert tms.state(ups) == "SCHEDULED"
    assert not tms.of_kind("N-ACTION")
    assert journal_is_empty(device)


def test_highest_priority_item_is_taken_first_and_other_stations_are_ignored(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    low = schedule(tms, ost, plan, bdi, priority="LOW")
    high = schedule(tms, ost, plan, bdi, priority="HIGH")
    other = make_workitem(
        station="LINAC9", start=NOW, plan=plan, plan_ae="OST", bdi=bdi, bdi_ae="TMS", priority="HIGH"
    )
    tms.add_workitem(other)
    with make_device(tmp_path, tms, ost) as device:
        assert [o.ups_uid for o in device.run_once()] == [high]
        assert [o.ups_uid for o in device.run_once()] == [low]
        assert device.run_once() == []
    assert tms.state(str(other.SOPInstanceUID)) == "SCHEDULED"


def test_recovery_with_the_tms_down_keeps_the_claim_for_later(peers, tmp_path):
    tms, ost = peers
    plan, bdi = tdw_plan_and_bdi()
    schedule(tms, ost, plan, bdi)
    journal = tmp_path / "journal"
    crashed = make_device(tmp_path, tms, ost, checkpoint=crash_at("before_claim"), journal=journal)
    with crashed, pytest.raises(SimulatedCrash):
        crashed.run_once()
    port = closed_port()
    config = DeviceConfig(
        ae_title="TDD1",
        station=STATION,
        machine=machine(),
        tms=Peer("TMS", "127.0.0.1", port),
        out_dir=tmp_path,
        journal_dir=journal,
        retry=RetryPolicy(attempts=2, first_delay_s=0.1),
    )
    with Device(config, deliver=FakeDeliver(), sleep=lambda s: None, now=lambda: NOW) as device:
        outcomes = device.recover()
        assert [(o.state, o.recovered) for o in outcomes] == [(OutcomeState.PENDING, True)]
        assert f"TMS@127.0.0.1:{port}" in outcomes[0].reason
        assert len(device.journal.claims()) == 1  # still there for the next attempt
