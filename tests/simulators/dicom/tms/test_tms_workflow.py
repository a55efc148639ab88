"""Scheduling through the client, OST retrieval (C-MOVE / C-GET / C-FIND) and continuation after an
interrupted delivery, with the IHE-RO TDW-II plan and its interrupted record (fraction 3, 46.27914 of
509.07073 MU)."""

from __future__ import annotations

import copy

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from tms_helpers import (
    RECORD1_PATH,
    association,
    final_update,
    find,
    make_config,
    n_action,
    n_set,
    read_plan,
    state_info,
    status_of,
)

from simulators.dicom import codes
from simulators.dicom.bdi import read_bdi
from simulators.dicom.peers import Peer
from simulators.dicom.tms import client
from simulators.dicom.tms.server import TmsServer

PLAN_UID = "1.2.840.114358.420.20100605152044.2"
RECORD1_UID = "1.2.840.114358.420.20100605174339.2"


def tms_peer(server: TmsServer) -> Peer:
    return Peer("TMS", "127.0.0.1", server.port)


def get_instance(port: int, ref, called: str = "TMS") -> Dataset:
    """C-GET one instance (IMAGE level) with SCP role selection; returns the received dataset."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = ref.study_uid
    identifier.SeriesInstanceUID = ref.series_uid
    identifier.SOPInstanceUID = ref.sop_instance_uid
    with association(port, "TDD", called, get_roles=True) as assoc:
        statuses = [
            status_of(s) for s, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        ]
        received = list(assoc.received)
    assert statuses[-1] == 0x0000, statuses
    assert len(received) == 1
    return received[0]


def deliver_and_cancel(port: int, uid: str, outputs: list[Dataset], station: str = "LINAC1") -> None:
    """RO-60, RO-63, RO-64, RO-65 for an interrupted session (or a refusal when ``outputs`` is empty)."""
    tuid = generate_uid()
    with association(port, "TDD") as assoc:
        assert status_of(n_action(assoc, state_info("IN PROGRESS", tuid), 1, uid)) == 0
        for record in outputs:
            assert status_of(assoc.send_c_store(record)) == 0
        if outputs:
            mods = final_update(tuid, station, outputs)
            mods.ProcedureStepProgressInformationSequence[0].ProcedureStepProgress = "9"
        else:
            mods = Dataset()
            mods.TransactionUID = tuid
            progress = Dataset()
            progress.ProcedureStepProgress = "0"
            progress.ReasonForCancellation = "plan refused: machine CDMS-LAB-CK unknown"
            mods.ProcedureStepProgressInformationSequence = [progress]
        assert status_of(n_set(assoc, mods, uid)) == 0
        assert status_of(n_action(assoc, state_info("CANCELED", tuid), 1, uid)) == 0


def test_schedule_plan_creates_one_ups_per_fraction_and_the_worklist_shows_them(tms):
    plan = read_plan()
    created = client.schedule_plan(plan, "LINAC1", 3, tms=tms_peer(tms))
    assert [c.fraction_number for c in created] == [1, 2, 3]
    assert all(c.status == 0 for c in created)
    entries = client.list_worklist(tms_peer(tms), station="LINAC1")
    assert [e.uid for e in entries] == [c.ups_uid for c in created]
    assert [e.label for e in entries] == [f"76Plan2_1path Fx {n}/5" for n in (1, 2, 3)]
    assert {e.state for e in entries} == {"SCHEDULED"}
    assert {e.delivery_type for e in entries} == {"TREATMENT"}
    assert client.list_worklist(tms_peer(tms), station="LINAC9") == []
    first = entries[0]
    plan_ref = next(r for r in first.inputs if r.sop_class_uid == codes.RT_PLAN_STORAGE)
    bdi_ref = next(r for r in first.inputs if r.sop_class_uid == codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE)
    assert (plan_ref.sop_instance_uid, plan_ref.retrieve_ae, bdi_ref.retrieve_ae) == (PLAN_UID, "TMS", "TMS")
    bdi = read_bdi(get_instance(tms.port, bdi_ref))
    assert [(t.beam_number, t.delivery_type, t.fraction_number) for t in bdi.beam_tasks] == [
        (1, "TREATMENT", 1)
    ]
    with pytest.raises(client.TmsClientError, match="plans 5 fraction"):
        client.schedule_plan(plan, "LINAC1", 3, first_fraction=4, tms=tms_peer(tms))


def test_c_move_and_c_get_of_the_stored_plan(tms, device):
    client.store(tms_peer(tms), [read_plan()])
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = "1.2.840.4027.3.20100520.114447"
    identifier.SOPInstanceUID = PLAN_UID
    with association(tms.port, "TDD") as assoc:
        results = list(assoc.send_c_move(identifier, "TDD", StudyRootQueryRetrieveInformationModelMove))
        unknown = list(assoc.send_c_move(identifier, "NOWHERE", StudyRootQueryRetrieveInformationModelMove))
        no_key = Dataset()
        no_key.QueryRetrieveLevel = "IMAGE"
        refused = list(assoc.send_c_move(no_key, "TDD", StudyRootQueryRetrieveInformationModelMove))
    final = results[-1][0]
    assert status_of(final) == 0x0000
    assert int(final.NumberOfCompletedSuboperations) == 1
    assert device.wait_for(lambda: len(device.stored) == 1)
    assert device.stored[0].SOPInstanceUID == PLAN_UID
    assert status_of(unknown[-1][0]) == 0xA801
    assert status_of(refused[-1][0]) == 0xA900
    ref = type(
        "Ref",
        (),
        {"study_uid": "1.2.840.4027.3.20100520.114447", "series_uid": "", "sop_instance_uid": PLAN_UID},
    )
    got = get_instance(tms.port, ref)
    assert got.RTPlanLabel == "76Plan2_1path"


def test_study_root_find_at_each_level(tms):
    plan = read_plan()
    client.schedule_plan(plan, "LINAC1", 1, tms=tms_peer(tms))  # stores the plan and one BDI
    with association(tms.port, "TDD") as assoc:
        study = Dataset()
        study.QueryRetrieveLevel = "STUDY"
        study.StudyInstanceUID = ""
        study.PatientID = "IHE-RO*"
        study.NumberOfStudyRelatedInstances = ""
        study.ModalitiesInStudy = ""
        found, final = find(assoc, study, StudyRootQueryRetrieveInformationModelFind)
        assert final == 0
        assert len(found) == 1
        assert int(found[0].NumberOfStudyRelatedInstances) == 2
        assert found[0].RetrieveAETitle == "TMS"
        series = Dataset()
        series.QueryRetrieveLevel = "SERIES"
        series.StudyInstanceUID = plan.StudyInstanceUID
        series.SeriesInstanceUID = ""
        series.Modality = "RTPLAN"
        found, _ = find(assoc, series, StudyRootQueryRetrieveInformationModelFind)
        assert [str(d.SeriesInstanceUID) for d in found] == [str(plan.SeriesInstanceUID)]
        image = Dataset()
        image.QueryRetrieveLevel = "IMAGE"
        image.SOPInstanceUID = ""
        image.SOPClassUID = codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE
        found, _ = find(assoc, image, StudyRootQueryRetrieveInformationModelFind)
        assert len(found) == 1
        bad = Dataset()
        bad.QueryRetrieveLevel = "FRAME"
        assert find(assoc, bad, StudyRootQueryRetrieveInformationModelFind) == ([], 0xA900)


def test_interrupted_fraction_is_continued_with_the_right_metersets(tms):
    peer = tms_peer(tms)
    (scheduled,) = client.schedule_plan(read_plan(), "LINAC1", 1, first_fraction=3, tms=peer)
    record1 = dcmread(RECORD1_PATH)
    deliver_and_cancel(tms.port, scheduled.ups_uid, [record1])

    entries = {e.uid: e for e in client.list_worklist(peer)}
    assert entries[scheduled.ups_uid].state == "CANCELED"
    assert entries[scheduled.ups_uid].outputs == (RECORD1_UID,)
    (cont,) = [e for e in entries.values() if e.replaces == scheduled.ups_uid]
    assert (cont.state, cont.delivery_type, cont.station) == ("SCHEDULED", "CONTINUATION", "LINAC1")
    assert {r.sop_instance_uid for r in cont.inputs} >= {PLAN_UID, RECORD1_UID}
    bdi_ref = next(r for r in cont.inputs if r.sop_class_uid == codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE)
    assert bdi_ref.retrieve_ae == "TMS"
    (task,) = read_bdi(get_instance(tms.port, bdi_ref)).beam_tasks
    assert (task.beam_number, task.delivery_type, task.fraction_number) == (1, "CONTINUATION", 3)
    assert task.start_meterset_mu == pytest.approx(46.27914, abs=1e-5)
    assert task.end_meterset_mu == pytest.approx(509.07073, abs=1e-5)
    bdi_ds = get_instance(tms.port, bdi_ref)
    assert bdi_ds.BeamTaskSequence[0].PrimaryDosimeterUnit == "MU"

    # a second interruption of the continuation: the next start is the sum of both partial records
    record2 = copy.deepcopy(record1)
    record2.SOPInstanceUID = generate_uid()
    record2.file_meta.MediaStorageSOPInstanceUID = record2.SOPInstanceUID
    record2.TreatmentSessionBeamSequence[0].DeliveredPrimaryMeterset = "100.0"
    record2.TreatmentSessionBeamSequence[0].TreatmentDeliveryType = "CONTINUATION"
    deliver_and_cancel(tms.port, cont.uid, [record2])
    (cont2,) = [e for e in client.list_worklist(peer) if e.replaces == cont.uid]
    assert {r.sop_instance_uid for r in cont2.inputs} >= {RECORD1_UID, str(record2.SOPInstanceUID)}
    bdi2_ref = next(r for r in cont2.inputs if r.sop_class_uid == codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE)
    (task2,) = read_bdi(get_instance(tms.port, bdi2_ref)).beam_tasks
    assert task2.start_meterset_mu == pytest.approx(146.27914, abs=1e-5)
    assert task2.end_meterset_mu == pytest.approx(509.07073, abs=1e-5)
    assert task2.fraction_number == 3


def test_refused_plan_is_not_continued_and_its_reason_is_kept(tms):
    peer = tms_peer(tms)
    (scheduled,) = client.schedule_plan(read_plan(), "LINAC1", 1, tms=peer)
    deliver_and_cancel(tms.port, scheduled.ups_uid, [])
    entries = client.list_worklist(peer)
    assert [(e.uid, e.state) for e in entries] == [(scheduled.ups_uid, "CANCELED")]
    assert entries[0].reason == "plan refused: machine CDMS-LAB-CK unknown"
    assert client.list_worklist(peer, states=["SCHEDULED"]) == []


def test_completed_needs_the_final_update_and_is_not_continued(tms):
    peer = tms_peer(tms)
    (scheduled,) = client.schedule_plan(read_plan(), "LINAC1", 1, tms=peer)
    tuid = generate_uid()
    with association(tms.port, "TDD") as assoc:
        assert status_of(n_action(assoc, state_info("IN PROGRESS", tuid), 1, scheduled.ups_uid)) == 0
        status, _ = n_action(assoc, state_info("COMPLETED", tuid), 1, scheduled.ups_uid)
        assert status_of(status) == 0xC304
        assert "0074,1216" in str(status.ErrorComment)
        assert status_of(n_set(assoc, final_update(tuid), scheduled.ups_uid)) == 0
        assert status_of(n_action(assoc, state_info("COMPLETED", tuid), 1, scheduled.ups_uid)) == 0
    assert [e.state for e in client.list_worklist(peer)] == ["COMPLETED"]


def test_separate_ost_ae_serves_the_plan_and_names_itself(tmp_path, device):
    config = make_config(tmp_path / "tms", device.peer, ost_ae_title="OST", ost_port=0)
    with TmsServer(config) as server:
        assert server.ost_port not in (0, server.port)
        ost = Peer("OST", "127.0.0.1", server.ost_port)
        (scheduled,) = client.schedule_plan(read_plan(), "LINAC1", 1, tms=tms_peer(server), ost=ost)
        (entry,) = client.list_worklist(tms_peer(server))
        plan_ref = next(r for r in entry.inputs if r.sop_class_uid == codes.RT_PLAN_STORAGE)
        assert plan_ref.retrieve_ae == "OST"
        got = get_instance(server.ost_port, plan_ref, called="OST")
        assert got.SOPInstanceUID == PLAN_UID
        with association(server.ost_port, "TDD", called="OST") as assoc:
            assert "1.2.840.10008.5.1.4.34.6.3" not in {
                str(cx.abstract_syntax) for cx in assoc.accepted_contexts
            }
            with pytest.raises(ValueError, match="No presentation context"):  # the OST has no UPS service
                n_action(assoc, state_info("IN PROGRESS", generate_uid()), 1, scheduled.ups_uid)
