"""The TMS's N-EVENT-REPORT sender keeps one association per subscriber and replaces a dead one."""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import UnifiedProcedureStepEvent, Verification
from tms_helpers import WAIT_S, LoopbackScp

from simulators.dicom import codes
from simulators.dicom.assoc_tuning import prompt_release
from simulators.dicom.tms import events
from simulators.dicom.tms.events import EventSender
from simulators.dicom.tms.ups_store import UpsEvent


class Receiver(LoopbackScp):
    """A subscriber's event receiver that counts the associations it accepted and those released."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.reports: list[str] = []
        self.associations = 0
        self.released = 0
        ae = AE(ae_title="SUB")
        ae.add_supported_context(UnifiedProcedureStepEvent, scu_role=False, scp_role=True)
        ae.add_supported_context(Verification)

        def count(attribute: str):
            def handler(event) -> None:
                with self.cond:
                    setattr(self, attribute, getattr(self, attribute) + 1)
                    self.cond.notify_all()

            return handler

        def on_report(event):
            with self.cond:
                self.reports.append(str(event.request.AffectedSOPInstanceUID))
                self.cond.notify_all()
            return 0x0000, None

        handlers = [
            (evt.EVT_ESTABLISHED, count("associations")),
            (evt.EVT_RELEASED, count("released")),
            (evt.EVT_N_EVENT_REPORT, on_report),
        ]
        self.serve(ae, handlers)

    def wait_for(self, predicate) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, WAIT_S)


@pytest.fixture
def receiver():
    peer = Receiver()
    yield peer
    peer.stop()


def report(uid: str) -> UpsEvent:
    info = Dataset()
    info.ProcedureStepState = codes.STATE_IN_PROGRESS
    info.InputReadinessState = codes.INPUT_READY
    return UpsEvent(codes.EVENT_STATE_REPORT, uid, info, ("SUB",))


def test_reports_share_one_association_until_it_is_idle(receiver):
    sender = EventSender("TMS", lambda ae: receiver.peer if ae == "SUB" else None, idle_release_s=30)
    sender.start()
    try:
        for uid in ("1.2.1", "1.2.2", "1.2.3"):
            sender.submit([report(uid)])
            assert sender.flush(WAIT_S)
        assert receiver.wait_for(lambda: len(receiver.reports) == 3)
        assert receiver.associations == 1
        assert [d.status for d in sender.deliveries] == [0, 0, 0]
    finally:
        sender.stop()
    assert receiver.wait_for(lambda: receiver.released == 1)  # released on stop


def test_an_idle_association_is_released(receiver):
    sender = EventSender("TMS", lambda ae: receiver.peer, idle_release_s=0.05)
    sender.start()
    try:
        sender.submit([report("1.2.1")])
        assert sender.flush(WAIT_S)
        assert receiver.wait_for(lambda: receiver.released == 1)
        sender.submit([report("1.2.2")])
        assert sender.flush(WAIT_S)
        assert receiver.wait_for(lambda: len(receiver.reports) == 2)
        assert receiver.associations == 2
    finally:
        sender.stop()


def test_a_kept_association_that_died_is_replaced(receiver):
    sender = EventSender("TMS", lambda ae: receiver.peer, idle_release_s=30)
    sender.start()
    try:
        sender.submit([report("1.2.1")])
        assert sender.flush(WAIT_S)
        receiver.abort_all()  # e.g. the device restarted
        sender.submit([report("1.2.2")])
        assert sender.flush(WAIT_S)
        assert receiver.wait_for(lambda: len(receiver.reports) == 2)
        assert receiver.associations == 2
        assert [d.status for d in sender.deliveries] == [0, 0]
    finally:
        sender.stop()


def test_prompt_release_still_ends_the_association_and_its_reactor(receiver):
    ae = AE(ae_title="TMS")
    ae.add_requested_context(Verification)
    assoc = ae.associate(receiver.peer.host, receiver.peer.port, ae_title="SUB")
    assert assoc.is_established
    prompt_release(assoc)
    assoc.release()
    assert assoc.is_released
    assert not assoc.dul.is_alive()
    assert receiver.wait_for(lambda: receiver.released == 1)
    ae.shutdown()


def test_the_delivery_history_is_bounded(monkeypatch):
    """A TMS runs for months: only the most recent deliveries are kept."""
    monkeypatch.setattr(events, "DELIVERY_HISTORY", 3)
    sender = EventSender("TMS", lambda ae: None)  # nobody to send to: each report is recorded undelivered
    sender.start()
    try:
        for number in range(5):
            sender.submit([report(f"1.2.{number}")])
            assert sender.flush(WAIT_S)
    finally:
        sender.stop()
    assert [d.sop_instance_uid for d in sender.deliveries] == ["1.2.2", "1.2.3", "1.2.4"]
    assert all(d.status is None for d in sender.deliveries)
