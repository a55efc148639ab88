"""The embedded TMS over the network: UPS state machine and statuses, matching, events, security."""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import UnifiedProcedureStepPull, UnifiedProcedureStepPush, UnifiedProcedureStepWatch
from tms_helpers import (
    association,
    code,
    final_update,
    find,
    make_config,
    n_action,
    n_get,
    n_set,
    state_info,
    status_of,
    ups_attributes,
)

from simulators.dicom import codes
from simulators.dicom.tms.server import TmsServer

TUID_TAG = 0x00081195


def create(port: int, attrs: Dataset | None = None, uid: str | None = None) -> str:
    uid = uid or generate_uid()
    with association(port, "RTSIM") as assoc:
        status, _ = assoc.send_n_create(attrs or ups_attributes(), UnifiedProcedureStepPush, uid)
    assert status_of(status) == 0x0000, status
    return uid


def claim(port: int, uid: str, tuid: str, ae_title: str = "TDD") -> int:
    with association(port, ae_title) as assoc:
        return status_of(n_action(assoc, state_info("IN PROGRESS", tuid), 1, uid))


def test_echo_and_the_full_happy_path(tms):
    uid = create(tms.port)
    tuid = generate_uid()
    with association(tms.port) as assoc:
        assert status_of(assoc.send_c_echo()) == 0x0000
        status, reply = n_action(assoc, state_info("IN PROGRESS", tuid), 1, uid)
        assert status_of(status) == 0x0000
        assert reply.ProcedureStepState == "IN PROGRESS"
        assert TUID_TAG not in reply
        progress = Dataset()
        progress.TransactionUID = tuid
        item = Dataset()
        item.ProcedureStepProgress = "50"
        progress.ProcedureStepProgressInformationSequence = Sequence([item])
        assert status_of(n_set(assoc, progress, uid)) == 0x0000
        assert status_of(n_set(assoc, final_update(tuid), uid)) == 0x0000
        assert status_of(n_action(assoc, state_info("COMPLETED", tuid), 1, uid)) == 0x0000
        assert status_of(n_action(assoc, state_info("COMPLETED", tuid), 1, uid)) == 0xB306
        status, attrs = n_get(assoc, [0x00741000, TUID_TAG], uid)
    assert status_of(status) == 0x0000
    assert attrs.ProcedureStepState == "COMPLETED"
    assert TUID_TAG not in attrs


@pytest.mark.parametrize(
    ("path", "request_state", "expected"),
    [
        ("scheduled", "COMPLETED", 0xC310),
        ("scheduled", "CANCELED", 0xC310),
        ("scheduled", "SCHEDULED", 0xC303),
        ("in_progress", "IN PROGRESS", 0xC302),
        ("in_progress", "SCHEDULED", 0xC303),
        ("in_progress_wrong_tuid", "CANCELED", 0xC301),
        ("in_progress_no_tuid", "CANCELED", 0xC301),
        ("in_progress", "COMPLETED", 0xC304),  # no final N-SET yet
        ("completed", "CANCELED", 0xC300),
        ("completed", "IN PROGRESS", 0xC300),
        ("canceled", "CANCELED", 0xB304),
        ("canceled", "COMPLETED", 0xC300),
        ("unknown", "IN PROGRESS", 0xC307),
    ],
)
def test_state_table(tms, path, request_state, expected):
    uid = create(tms.port)
    tuid = generate_uid()
    with association(tms.port) as assoc:
        if path != "scheduled" and path != "unknown":
            assert status_of(n_action(assoc, state_info("IN PROGRESS", tuid), 1, uid)) == 0
        if path == "completed":
            assert status_of(n_set(assoc, final_update(tuid), uid)) == 0
            assert status_of(n_action(assoc, state_info("COMPLETED", tuid), 1, uid)) == 0
        if path == "canceled":
            assert status_of(n_action(assoc, state_info("CANCELED", tuid), 1, uid)) == 0
        target = generate_uid() if path == "unknown" else uid
        given = {"in_progress_wrong_tuid": generate_uid(), "in_progress_no_tuid": None}.get(path, tuid)
        status, _ = n_action(assoc, state_info(request_state, given), 1, target)
    assert status_of(status) == expected


def test_claim_without_transaction_uid_is_c301_and_n_set_needs_the_lock(tms):
    uid = create(tms.port)
    tuid = generate_uid()
    with association(tms.port) as assoc:
        assert status_of(n_action(assoc, state_info("IN PROGRESS", None), 1, uid)) == 0xC301
        assert status_of(n_action(assoc, state_info("IN PROGRESS", tuid), 1, uid)) == 0
        mods = Dataset()
        mods.ProcedureStepLabel = "changed"
        assert status_of(n_set(assoc, mods, uid)) == 0xC301
        mods.TransactionUID = generate_uid()
        assert status_of(n_set(assoc, mods, uid)) == 0xC301
        mods.TransactionUID = tuid
        assert status_of(n_set(assoc, mods, uid)) == 0
        assert status_of(n_action(assoc, state_info("CANCELED", tuid), 1, uid)) == 0
        assert status_of(n_set(assoc, mods, uid)) == 0xC300


@pytest.mark.parametrize("keyword", ["SOPClassUID", "SOPInstanceUID", "ProcedureStepState"])
def test_n_set_refuses_identity_and_state(tms, keyword):
    uid = create(tms.port)
    mods = Dataset()
    setattr(
        mods,
        keyword,
        {"SOPClassUID": "1.2.3", "SOPInstanceUID": "1.2.3", "ProcedureStepState": "COMPLETED"}[keyword],
    )
    with association(tms.port) as assoc:
        status, _ = n_set(assoc, mods, uid)
    assert status_of(status) == 0x0106
    assert keyword in str(status.ErrorComment)


def test_two_claimants_exactly_one_wins(tms):
    uid = create(tms.port)
    results: list[int] = []
    barrier = threading.Barrier(2)

    def contender(ae_title: str) -> None:
        with association(tms.port, ae_title) as assoc:
            barrier.wait(5)
            results.append(status_of(n_action(assoc, state_info("IN PROGRESS", generate_uid()), 1, uid)))

    threads = [threading.Thread(target=contender, args=(ae,)) for ae in ("TDD", "TDD2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(results) == [0x0000, 0xC302]


def test_worklist_matching_and_transaction_uid_never_returned(tms):
    a = create(tms.port, ups_attributes("LINAC1", "20240315090000", "A"))
    b = create(tms.port, ups_attributes("LINAC2", "20240316090000", "B"))
    c = create(tms.port, ups_attributes("LINAC1", "20240317090000", "C"))
    assert claim(tms.port, c, generate_uid()) == 0
    with association(tms.port) as assoc:
        query = Dataset()
        query.ProcedureStepState = "SCHEDULED"
        query.ScheduledStationNameCodeSequence = Sequence([code("LINAC1", "", "")])
        query.ScheduledProcedureStepStartDateTime = "20240315000000-20240317235959"
        query.ScheduledWorkitemCodeSequence = Sequence([code("121726", "DCM", "")])
        query.ProcedureStepLabel = ""
        query.TransactionUID = ""
        found, final = find(assoc, query)
        assert final == 0x0000
        assert [str(ds.SOPInstanceUID) for ds in found] == [a]
        assert all(TUID_TAG not in ds for ds in found)
        assert found[0].ProcedureStepLabel == "A"
        assert found[0].SOPClassUID == UnifiedProcedureStepPush
        everything = Dataset()
        everything.ProcedureStepState = ""
        everything.TransactionUID = ""
        found, _ = find(assoc, everything)
        assert {str(ds.SOPInstanceUID) for ds in found} == {a, b, c}
        assert all(TUID_TAG not in ds for ds in found)
        wildcard = Dataset()
        wildcard.ProcedureStepLabel = "?"
        wildcard.PatientName = "test^*"
        wildcard.ScheduledProcedureStepStartDateTime = "20240316-"
        found, _ = find(assoc, wildcard, UnifiedProcedureStepWatch)
        assert {str(ds.SOPInstanceUID) for ds in found} == {b, c}
        status, attrs = n_get(assoc, [], c)
        assert status_of(status) == 0
        assert TUID_TAG not in attrs
        assert attrs.ProcedureStepState == "IN PROGRESS"


def test_subscribe_gives_initial_state_report_and_events_follow(tms, watcher):
    uid = create(tms.port)
    with association(tms.port, "WATCHER") as assoc:
        info = Dataset()
        info.ReceivingAE = "WATCHER"
        info.DeletionLock = "FALSE"
        status, _ = n_action(assoc, info, 3, uid, meta=UnifiedProcedureStepWatch)
    assert status_of(status) == 0
    assert watcher.wait_for(lambda: len(watcher.events_of(1, uid)) == 1)
    assert watcher.events_of(1, uid)[0].ProcedureStepState == "SCHEDULED"
    assert claim(tms.port, uid, generate_uid()) == 0
    assert watcher.wait_for(lambda: len(watcher.events_of(1, uid)) == 2)
    assert watcher.events_of(1, uid)[1].ProcedureStepState == "IN PROGRESS"


def test_global_subscription_with_lock_reports_every_ups_and_new_ones(tms, watcher):
    first = create(tms.port)
    with association(tms.port, "WATCHER") as assoc:
        info = Dataset()
        info.ReceivingAE = "WATCHER"
        info.DeletionLock = "TRUE"
        status, _ = n_action(
            assoc, info, 3, codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE, meta=UnifiedProcedureStepWatch
        )
    assert status_of(status) == 0
    assert watcher.wait_for(lambda: len(watcher.events_of(1, first)) == 1)
    second = create(tms.port)
    assert watcher.wait_for(lambda: watcher.events_of(1, second) and watcher.events_of(5, second))
    assert watcher.events_of(5, second)[0].ScheduledStationNameCodeSequence[0].CodeValue == "LINAC1"


def test_subscribe_unknown_receiving_ae_is_c308(tms):
    uid = create(tms.port)
    with association(tms.port, "WATCHER") as assoc:
        info = Dataset()
        info.ReceivingAE = "NOBODY"
        info.DeletionLock = "FALSE"
        status, _ = n_action(assoc, info, 3, uid, meta=UnifiedProcedureStepWatch)
    assert status_of(status) == 0xC308


def test_request_cancel_reaches_the_performer(tms, device):
    uid = create(tms.port)
    tuid = generate_uid()
    assert claim(tms.port, uid, tuid, "TDD") == 0
    with association(tms.port, "OTHER") as assoc:
        info = Dataset()
        info.ReasonForCancellation = "patient unwell"
        status, _ = n_action(assoc, info, 2, uid, meta=UnifiedProcedureStepWatch)
    assert status_of(status) == 0
    assert device.wait_for(lambda: device.events_of(2, uid))
    report = device.events_of(2, uid)[0]
    assert report.RequestingAE == "OTHER"
    assert report.ReasonForCancellation == "patient unwell"
    with association(tms.port, "TDD") as assoc:  # the performer decides: still IN PROGRESS
        status, attrs = n_get(assoc, [0x00741000], uid)
        assert attrs.ProcedureStepState == "IN PROGRESS"


def test_request_cancel_of_scheduled_ups_cancels_it_and_keeps_the_reason(tms):
    uid = create(tms.port)
    with association(tms.port, "OTHER") as assoc:
        info = Dataset()
        info.ReasonForCancellation = "plan withdrawn"
        assert status_of(n_action(assoc, info, 2, uid, meta=UnifiedProcedureStepWatch)) == 0
        assert status_of(n_action(assoc, info, 2, uid, meta=UnifiedProcedureStepWatch)) == 0xB304
        _, attrs = n_get(assoc, [0x00741000, 0x00741002], uid)
    assert attrs.ProcedureStepState == "CANCELED"
    assert attrs.ProcedureStepProgressInformationSequence[0].ReasonForCancellation == "plan withdrawn"


def test_malformed_requests_get_failure_statuses_and_the_server_keeps_serving(tms):
    uid = create(tms.port)
    with association(tms.port) as assoc:
        assert status_of(n_action(assoc, state_info("IN PROGRESS", generate_uid()), 9, uid)) == 0x0123
        wrong_class = n_action(
            assoc, state_info("IN PROGRESS", generate_uid()), 1, uid, sop_class=UnifiedProcedureStepPull
        )
        assert status_of(wrong_class) == 0x0119
        no_state = Dataset()
        no_state.TransactionUID = generate_uid()
        assert status_of(n_action(assoc, no_state, 1, uid)) == 0x0115
        assert status_of(n_action(assoc, state_info("DONE", generate_uid()), 1, uid)) == 0x0115
        missing = ups_attributes()
        del missing.ProcedureStepLabel
        status, _ = assoc.send_n_create(missing, UnifiedProcedureStepPush, generate_uid())
        assert status_of(status) == 0x0120
        assert "ProcedureStepLabel" in str(status.ErrorComment)
        not_scheduled = ups_attributes()
        not_scheduled.ProcedureStepState = "IN PROGRESS"
        assert (
            status_of(assoc.send_n_create(not_scheduled, UnifiedProcedureStepPush, generate_uid())) == 0xC309
        )
        assert status_of(assoc.send_n_create(ups_attributes(), UnifiedProcedureStepPush, uid)) == 0x0111
        bad_date = Dataset()
        bad_date.ScheduledProcedureStepStartDateTime = "tomorrow-ish"
        found, final = find(assoc, bad_date)
        assert (found, final) == ([], 0xA900)
        assert status_of(n_get(assoc, [0x00741000], generate_uid())) == 0xC307
        assert status_of(assoc.send_c_echo()) == 0x0000
    assert claim(tms.port, uid, generate_uid()) == 0x0000


def test_calling_ae_not_allowed_is_rejected(tms):
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", tms.port, ae_title="TMS")
    try:
        assert assoc.is_rejected
        assert not assoc.is_established
    finally:
        ae.shutdown()


def test_called_ae_must_be_ours(tms):
    with association(tms.port, "TDD", called="SOMEONE") as assoc:
        assert assoc.is_rejected


def test_restart_keeps_worklist_states_locks_and_subscriptions(tmp_path, watcher, device):
    config = make_config(tmp_path / "tms", watcher.peer, device.peer)
    first = TmsServer(config)
    port = first.start()
    uid = create(port)
    tuid = generate_uid()
    assert claim(port, uid, tuid) == 0
    with association(port, "WATCHER") as assoc:
        info = Dataset()
        info.ReceivingAE = "WATCHER"
        info.DeletionLock = "FALSE"
        assert status_of(n_action(assoc, info, 3, uid, meta=UnifiedProcedureStepWatch)) == 0
    first.stop()
    second = TmsServer(config)
    port = second.start()
    try:
        assert watcher.wait_for(lambda: watcher.events_of(4))
        assert watcher.events_of(4)[0].SCPStatus == "RESTARTED"
        with association(port) as assoc:
            everything = Dataset()
            everything.ProcedureStepState = ""
            found, _ = find(assoc, everything)
            assert [(str(d.SOPInstanceUID), d.ProcedureStepState) for d in found] == [(uid, "IN PROGRESS")]
            assert status_of(n_action(assoc, state_info("IN PROGRESS", generate_uid()), 1, uid)) == 0xC302
            assert status_of(n_action(assoc, state_info("CANCELED", generate_uid()), 1, uid)) == 0xC301
            assert status_of(n_action(assoc, state_info("CANCELED", tuid), 1, uid)) == 0
        assert watcher.wait_for(
            lambda: any(e.ProcedureStepState == "CANCELED" for e in watcher.events_of(1, uid))
        )
    finally:
        second.stop()
