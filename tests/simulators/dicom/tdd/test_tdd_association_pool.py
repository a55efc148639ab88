"""AssociationPool: consecutive operations to one peer share one association; dead, stale or unsuitable
associations are never reused; idle ones are released by the reaper and by close()."""

from __future__ import annotations

import threading

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import RTBeamsTreatmentRecordStorage, Verification

from simulators.dicom.peers import Peer
from simulators.dicom.tdd.retry import RetryPolicy
from simulators.dicom.tdd.scu import AssociationPool, PeerClient


class CountingScp:
    """A pynetdicom SCP on 127.0.0.1:ephemeral that counts associations and releases."""

    def __init__(self) -> None:
        self.accepted = 0
        self.released = 0
        self.stored: list[str] = []
        self.released_event = threading.Event()
        self.lock = threading.Lock()
        ae = AE(ae_title="PEER")
        ae.add_supported_context(Verification)
        ae.add_supported_context(
            RTBeamsTreatmentRecordStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        handlers = [
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.peer = Peer("PEER", "127.0.0.1", self.server.server_address[1])

    def _on_accepted(self, event) -> None:
        with self.lock:
            self.accepted += 1

    def _on_released(self, event) -> None:
        with self.lock:
            self.released += 1
        self.released_event.set()

    def _on_store(self, event) -> int:
        self.stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    def abort_all(self) -> None:
        for assoc in list(self.server.active_associations):
            assoc.abort()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def scp():
    server = CountingScp()
    yield server
    server.stop()


def client(peer: Peer, pool: AssociationPool | None) -> PeerClient:
    return PeerClient("DEVICE", peer, policy=RetryPolicy(attempts=1), sleep=lambda s: None, pool=pool)


def record(transfer_syntax: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = RTBeamsTreatmentRecordStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return ds


def test_without_a_pool_every_operation_has_its_own_association(scp: CountingScp) -> None:
    peer_client = client(scp.peer, None)
    assert [peer_client.echo() for _ in range(3)] == [0, 0, 0]
    assert scp.accepted == 3


def test_with_a_pool_consecutive_operations_share_one_association(scp: CountingScp) -> None:
    pool = AssociationPool(max_idle_s=60)
    try:
        assert [client(scp.peer, pool).echo() for _ in range(3)] == [0, 0, 0]
        # a record C-STORE rides on the same association (the pooled request offers record storage)
        assert client(scp.peer, pool).store(record(ExplicitVRLittleEndian), "RO-63") == 0
        assert scp.accepted == 1
        assert len(scp.stored) == 1
    finally:
        pool.close()
    assert scp.released_event.wait(5)
    assert scp.released == 1


def test_an_aborted_association_is_not_reused(scp: CountingScp) -> None:
    pool = AssociationPool(max_idle_s=60)
    try:
        assert client(scp.peer, pool).echo() == 0
        scp.abort_all()
        # the pooled association is gone: the next operation opens a new one and succeeds
        for _ in range(200):  # the abort reaches the requestor's reactor asynchronously
            if not any(a.is_established for a, _ in pool._idle.values()):
                break
            threading.Event().wait(0.01)
        assert client(scp.peer, pool).echo() == 0
        assert scp.accepted == 2
    finally:
        pool.close()


def test_a_store_in_another_transfer_syntax_opens_a_new_association(scp: CountingScp) -> None:
    pool = AssociationPool(max_idle_s=60)
    try:
        assert client(scp.peer, pool).store(record(ExplicitVRLittleEndian), "RO-63") == 0
        assert client(scp.peer, pool).store(record(ImplicitVRLittleEndian), "RO-63") == 0
        assert scp.accepted == 2
        assert len(scp.stored) == 2
    finally:
        pool.close()


def test_the_reaper_releases_idle_associations(scp: CountingScp) -> None:
    pool = AssociationPool(max_idle_s=0.05)
    assert client(scp.peer, pool).echo() == 0
    assert scp.released_event.wait(5), "the idle association was never released"
    assert scp.released == 1
    assert pool._idle == {}
    pool.close()
