"""C-MOVE sub-associations: kept for the next C-MOVE to the same destination, replaced when they died,
and not kept for an instance in a syntax the kept association does not carry."""

from __future__ import annotations

import copy
import threading

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (
    RTBeamsDeliveryInstructionStorage,
    RTPlanStorage,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from tms_helpers import WAIT_S, LoopbackScp, association, make_config, read_plan, status_of

from simulators.dicom.tms.server import TmsServer


class Destination(LoopbackScp):
    """A Move Destination that counts the associations it accepted."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.associations = 0
        self.stored: list[str] = []
        ae = AE(ae_title="TDD")
        ae.add_supported_context(Verification)
        for uid in (RTPlanStorage, RTBeamsDeliveryInstructionStorage):
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)

        def on_established(event) -> None:
            with self.cond:
                self.associations += 1

        def on_store(event):
            with self.cond:
                self.stored.append(str(event.dataset.SOPInstanceUID))
                self.cond.notify_all()
            return 0x0000

        handlers = [(evt.EVT_ESTABLISHED, on_established), (evt.EVT_C_STORE, on_store)]
        self.serve(ae, handlers)


@pytest.fixture
def destination():
    peer = Destination()
    yield peer
    peer.stop()


@pytest.fixture
def server(tmp_path, destination):
    # kept far longer than the test takes: whether the next C-MOVE reuses it must not depend on load
    tms = TmsServer(make_config(tmp_path / "tms", destination.peer), kept_association_idle_s=60.0)
    tms.start()
    yield tms
    tms.stop()


def stored_plan(server: TmsServer, syntax: str | None = None) -> Dataset:
    plan = copy.deepcopy(read_plan())
    plan.SOPInstanceUID = generate_uid()
    if syntax is not None:
        plan.file_meta.TransferSyntaxUID = syntax
    server.objects.store_dataset(plan)
    return plan


def move(server: TmsServer, plan: Dataset) -> int:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = plan.StudyInstanceUID
    identifier.SOPInstanceUID = plan.SOPInstanceUID
    with association(server.port, "TDD") as assoc:
        responses = list(assoc.send_c_move(identifier, "TDD", StudyRootQueryRetrieveInformationModelMove))
    final = responses[-1][0]
    assert int(final.NumberOfCompletedSuboperations) == 1
    return status_of(final)


def test_consecutive_moves_to_one_destination_share_a_sub_association(server, destination):
    plans = [stored_plan(server) for _ in range(3)]
    assert [move(server, plan) for plan in plans] == [0, 0, 0]
    assert destination.stored == [str(p.SOPInstanceUID) for p in plans]
    assert destination.associations == 1


def test_a_dead_kept_sub_association_is_replaced(server, destination):
    first, second = stored_plan(server), stored_plan(server)
    assert move(server, first) == 0
    destination.abort_all()  # the device restarted
    with destination.cond:
        assert destination.cond.wait_for(lambda: not destination.server.active_associations, WAIT_S)
    assert move(server, second) == 0
    assert destination.stored == [str(first.SOPInstanceUID), str(second.SOPInstanceUID)]
    assert destination.associations == 2


def test_an_instance_in_another_syntax_gets_an_association_of_its_own(server, destination):
    usual, deflated = stored_plan(server), stored_plan(server, DeflatedExplicitVRLittleEndian)
    assert move(server, usual) == 0
    assert move(server, deflated) == 0
    assert move(server, usual) == 0  # the kept one is still there
    assert len(destination.stored) == 3
    assert destination.associations == 2
