"""The UPS store without the network: N-CREATE validation, events, subscriptions, persistence, threads."""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from tms_helpers import final_update, ups_attributes

from simulators.dicom import codes
from simulators.dicom.tms.matching import MatchKeyError
from simulators.dicom.tms.ups_store import UpsStore


@pytest.fixture
def store(tmp_path):
    s = UpsStore(tmp_path)
    yield s
    s.close()


def created(store: UpsStore, **changes) -> str:
    attrs = ups_attributes()
    for keyword, value in changes.items():
        setattr(attrs, keyword, value)
    outcome = store.create(attrs, uid=generate_uid())
    assert outcome.status == 0, outcome.comment
    return str(outcome.dataset.SOPInstanceUID)


@pytest.mark.parametrize(
    ("change", "status", "mentions"),
    [
        (("del", "ScheduledProcedureStepPriority"), 0x0120, "ScheduledProcedureStepPriority"),
        (("set", "ProcedureStepLabel", ""), 0x0121, "ProcedureStepLabel"),
        (("set", "ProcedureStepState", "CANCELED"), 0xC309, "not SCHEDULED"),
        (("set", "ScheduledProcedureStepPriority", "URGENT"), 0x0106, "ScheduledProcedureStepPriority"),
        (("set", "InputReadinessState", "MAYBE"), 0x0106, "InputReadinessState"),
        (("set", "ScheduledProcedureStepStartDateTime", "next week"), 0x0106, "StartDateTime"),
        (("set", "TransactionUID", "1.2.3"), 0x0106, "TransactionUID"),
        (("set", "SOPClassUID", codes.UPS_PULL_SOP_CLASS), 0x0106, "SOPClassUID"),
    ],
)
def test_n_create_validation(store, change, status, mentions):
    attrs = ups_attributes()
    if change[0] == "del":
        delattr(attrs, change[1])
    else:
        setattr(attrs, change[1], change[2])
    outcome = store.create(attrs, uid=generate_uid())
    assert outcome.status == status
    assert mentions in outcome.comment
    assert len(store) == 0


def test_n_create_fills_worklist_label_with_warning_and_type2_sequences(store):
    attrs = ups_attributes()
    del attrs.WorklistLabel
    del attrs.InputInformationSequence
    outcome = store.create(attrs)
    assert outcome.status == 0xB300
    ds = store.get(str(outcome.dataset.SOPInstanceUID))
    assert ds.WorklistLabel == codes.DEFAULT_WORKLIST_LABEL
    assert ds.InputInformationSequence == Sequence()
    assert ds.SOPClassUID == codes.UPS_PUSH_SOP_CLASS


def test_progress_and_assigned_events_go_to_subscribers(store):
    uid = created(store)
    assert store.subscribe(uid, "WATCHER", False).status == 0
    tuid = generate_uid()
    claim = store.change_state(uid, "IN PROGRESS", tuid, calling_ae="TDD")
    assert [(e.event_type, e.recipients, e.info.ProcedureStepState) for e in claim.events] == [
        (1, ("WATCHER",), "IN PROGRESS")
    ]
    mods = Dataset()
    mods.TransactionUID = tuid
    item = Dataset()
    item.ProcedureStepProgress = "40"
    mods.ProcedureStepProgressInformationSequence = Sequence([item])
    outcome = store.set(uid, mods)
    assert [e.event_type for e in outcome.events] == [3]
    assert outcome.events[0].info.ProcedureStepProgressInformationSequence[0].ProcedureStepProgress == "40"
    assert store.set(uid, mods).events == []  # nothing changed, nothing reported
    station = Dataset()
    station.TransactionUID = tuid
    code = Dataset()
    code.CodeValue = "LINAC2"
    station.ScheduledStationNameCodeSequence = Sequence([code])
    assert [e.event_type for e in store.set(uid, station).events] == [5]


def test_request_cancel_in_progress_targets_performer_and_subscribers(store):
    uid = created(store)
    store.subscribe(uid, "WATCHER", False)
    store.change_state(uid, "IN PROGRESS", generate_uid(), calling_ae="TDD")
    info = Dataset()
    info.ReasonForCancellation = "stop"
    outcome = store.request_cancel(uid, info, requesting_ae="OIS")
    (event,) = outcome.events
    assert (event.event_type, event.recipients) == (2, ("TDD", "WATCHER"))
    assert event.info.RequestingAE == "OIS"
    assert store.get(uid).ProcedureStepState == "IN PROGRESS"


def test_request_cancel_of_completed_is_c311(store):
    uid = created(store)
    tuid = generate_uid()
    store.change_state(uid, "IN PROGRESS", tuid)
    store.set(uid, final_update(tuid))
    assert store.change_state(uid, "COMPLETED", tuid).status == 0
    assert store.request_cancel(uid, Dataset(), requesting_ae="OIS").status == 0xC311
    assert store.request_cancel(generate_uid(), Dataset(), requesting_ae="OIS").status == 0xC307


def test_filtered_global_subscription_only_follows_matching_workitems(store):
    a = created(store)
    filter_keys = Dataset()
    code = Dataset()
    code.CodeValue = "LINAC2"
    filter_keys.ScheduledStationNameCodeSequence = Sequence([code])
    outcome = store.subscribe(codes.UPS_FILTERED_GLOBAL_SUBSCRIPTION_INSTANCE, "WATCHER", True, filter_keys)
    assert outcome.status == 0
    assert outcome.events == []  # the existing workitem is for LINAC1
    attrs = ups_attributes(station="LINAC2")
    b = str(store.create(attrs, uid=generate_uid()).dataset.SOPInstanceUID)
    assert store.subscribers(b) == ("WATCHER",)
    assert store.subscribers(a) == ()


def test_suspend_keeps_per_ups_subscriptions_unsubscribe_drops_all(store):
    a = created(store)
    store.subscribe(codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE, "WATCHER", True)
    assert store.subscribers(a) == ("WATCHER",)
    assert store.suspend_global(a, "WATCHER").status == 0xC314
    assert store.suspend_global(codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE, "WATCHER").status == 0
    b = created(store)
    assert (store.subscribers(a), store.subscribers(b)) == (("WATCHER",), ())
    assert store.unsubscribe(codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE, "WATCHER").status == 0
    assert store.subscribers(a) == ()


def test_persistence_of_items_locks_performer_and_subscriptions(tmp_path):
    first = UpsStore(tmp_path)
    uid = created(first)
    tuid = generate_uid()
    first.change_state(uid, "IN PROGRESS", tuid, calling_ae="TDD")
    first.subscribe(codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE, "WATCHER", False)
    assert not first.was_warm_start
    first.close()
    second = UpsStore(tmp_path)
    try:
        assert second.was_warm_start
        assert second.get(uid).ProcedureStepState == "IN PROGRESS"
        assert "TransactionUID" not in second.get(uid)
        assert second.transaction_uid(uid) == tuid
        assert second.performer_ae(uid) == "TDD"
        assert second.global_subscribers() == ("WATCHER",)
        assert second.change_state(uid, "CANCELED", generate_uid()).status == 0xC301
        assert [i.state for i in second.index()] == ["IN PROGRESS"]
    finally:
        second.close()


def test_a_damaged_workitem_file_is_skipped_not_fatal(tmp_path):
    first = UpsStore(tmp_path)
    keep = created(first)
    broken = created(first)
    first.close()
    (tmp_path / "ups" / f"{broken}.dcm").write_bytes(b"not dicom")
    second = UpsStore(tmp_path)
    try:
        assert keep in second
        assert broken not in second
    finally:
        second.close()


def test_lenient_mode_accepts_updates_without_transaction_uid(tmp_path):
    store = UpsStore(tmp_path, require_transaction_uid=False)
    try:
        uid = created(store)
        store.change_state(uid, "IN PROGRESS", generate_uid())
        mods = Dataset()
        mods.ProcedureStepLabel = "relabelled"
        assert store.set(uid, mods).status == 0
        mods.TransactionUID = generate_uid()
        assert store.set(uid, mods).status == 0xC301  # a wrong one is still wrong
        assert store.change_state(uid, "CANCELED", "").status == 0
    finally:
        store.close()


def test_concurrent_claims_on_the_store(store):
    uids = [created(store) for _ in range(5)]
    results: dict[str, list[int]] = {uid: [] for uid in uids}
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(5)
        for uid in uids:
            results[uid].append(store.change_state(uid, "IN PROGRESS", generate_uid()).status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(sorted(r) == [0] + [0xC302] * 7 for r in results.values())


def worklist_query(state: str = "SCHEDULED") -> Dataset:
    query = Dataset()
    query.SOPInstanceUID = ""
    query.ProcedureStepState = state
    query.ProcedureStepLabel = ""
    query.ScheduledProcedureStepStartDateTime = ""
    station = Dataset()
    station.CodeValue = ""
    query.ScheduledStationNameCodeSequence = Sequence([station])
    return query


@pytest.mark.parametrize(
    "encoding", [None, (True, True), (False, True)], ids=["plain", "implicit", "explicit"]
)
def test_find_answers_the_current_content_after_every_change(store, encoding):
    first = created(store, ProcedureStepLabel="Fx 1", ScheduledProcedureStepStartDateTime="20260302090000")
    second = created(store, ProcedureStepLabel="Fx 2", ScheduledProcedureStepStartDateTime="20260302080000")

    def labels(state: str = "SCHEDULED") -> list[tuple[str, str]]:
        return [
            (str(r.SOPInstanceUID), r.ProcedureStepLabel) for r in store.find(worklist_query(state), encoding)
        ]

    assert labels() == [(second, "Fx 2"), (first, "Fx 1")]  # by scheduled start
    assert labels() == [(second, "Fx 2"), (first, "Fx 1")]  # again, from the kept responses
    change = Dataset()
    change.ProcedureStepLabel = "Fx 1 (moved)"
    assert store.set(first, change).status == 0
    assert labels() == [(second, "Fx 2"), (first, "Fx 1 (moved)")]
    assert store.change_state(second, codes.STATE_IN_PROGRESS, generate_uid()).status == 0
    assert labels() == [(first, "Fx 1 (moved)")]
    assert labels("IN PROGRESS") == [(second, "Fx 2")]
    assert labels("") == [(second, "Fx 2"), (first, "Fx 1 (moved)")]  # universal
    response = store.find(worklist_query(), encoding)[0]
    assert "TransactionUID" not in response
    assert response.ScheduledStationNameCodeSequence[0].CodeValue == "LINAC1"
    assert "CodeMeaning" not in response.ScheduledStationNameCodeSequence[0]  # only the keys asked for


def test_find_refuses_an_invalid_date_key_even_without_candidates(store):
    created(store)
    query = worklist_query("COMPLETED")  # no workitem in that state to compare the date with
    query.ScheduledProcedureStepStartDateTime = "tomorrow-ish"
    with pytest.raises(MatchKeyError, match="ScheduledProcedureStepStartDateTime"):
        store.find(query)


@pytest.mark.parametrize("end", ["COMPLETED", "CANCELED"])
def test_each_version_of_a_workitem_file_is_what_pydicom_writes(tmp_path, end):
    """The workitem file is written from the elements' kept bytes; it must stay byte for byte what
    pydicom writes for the current content, through every change and a restart (elements read back
    from the file), including a change of character set."""
    from io import BytesIO

    from pydicom import dcmread

    def assert_file_is_current(store: UpsStore, uid: str) -> None:
        current = store._items[uid]
        expected = BytesIO()
        current.save_as(expected, enforce_file_format=True)
        assert (tmp_path / "ups" / f"{uid}.dcm").read_bytes() == expected.getvalue()

    def progress(tuid: str, percent: int, description: str) -> Dataset:
        mods = Dataset()
        mods.TransactionUID = tuid
        item = Dataset()
        item.ProcedureStepProgress = str(percent)
        item.ProcedureStepProgressDescription = description
        mods.ProcedureStepProgressInformationSequence = Sequence([item])
        return mods

    store = UpsStore(tmp_path)
    uid = created(store)
    tuid = generate_uid()
    assert store.change_state(uid, "IN PROGRESS", tuid).status == 0
    assert_file_is_current(store, uid)
    assert store.set(uid, progress(tuid, 0, "beam 1")).status == 0
    assert_file_is_current(store, uid)
    store.close()
    store = UpsStore(tmp_path)  # a restart: the elements are read back from the file
    try:
        assert store.set(uid, progress(tuid, 50, "beam 2")).status == 0
        assert_file_is_current(store, uid)
        latin = progress(tuid, 50, "Strahl 2 läuft")
        latin.SpecificCharacterSet = "ISO_IR 100"
        latin.PatientName = "Müller^Jürgen"  # an element the store itself never reads
        assert store.set(uid, latin).status == 0
        assert_file_is_current(store, uid)
        store.close()
        store = UpsStore(tmp_path)  # the name is raw Latin-1 bytes again
        utf8 = progress(tuid, 60, "Strahl 2 läuft")
        utf8.SpecificCharacterSet = "ISO_IR 192"  # the name is encoded again, in UTF-8
        assert store.set(uid, utf8).status == 0
        assert_file_is_current(store, uid)
        assert "Müller^Jürgen".encode() in (tmp_path / "ups" / f"{uid}.dcm").read_bytes()
        store.close()
        store = UpsStore(tmp_path)  # raw UTF-8 bytes, written again under the same character set
        assert store.set(uid, progress(tuid, 70, "beam 3")).status == 0
        assert_file_is_current(store, uid)
        assert "Müller^Jürgen".encode() in (tmp_path / "ups" / f"{uid}.dcm").read_bytes()
        reread = dcmread(tmp_path / "ups" / f"{uid}.dcm")
        assert reread.PatientName == "Müller^Jürgen"
        assert store.set(uid, final_update(tuid)).status == 0
        assert store.change_state(uid, end, tuid).status == 0
        assert_file_is_current(store, uid)
        reread = dcmread(tmp_path / "ups" / f"{uid}.dcm")
        assert reread.ProcedureStepState == end
        progress_item = reread.ProcedureStepProgressInformationSequence[0]
        assert ("ProcedureStepCancellationDateTime" in progress_item) == (end == "CANCELED")
    finally:
        store.close()
