"""The injectable network-fault layer of the device's PeerClient, against the embedded TMS (C-ECHO)."""

from __future__ import annotations

import pytest

from simulators.dicom.peers import Peer
from simulators.dicom.tdd.retry import AssociationFailedError, PeerCommunicationError, RetryPolicy
from simulators.dicom.tdd.scu import InjectedNetworkFault, PeerClient, Timeouts
from simulators.dicom.tms.config import TmsConfig
from simulators.dicom.tms.server import TmsServer


@pytest.fixture(scope="module")
def tms(tmp_path_factory):
    server = TmsServer(TmsConfig(data_dir=tmp_path_factory.mktemp("tms"), port=0, allowed_ae_titles=("DEV",)))
    server.start()
    yield Peer("TMS", "127.0.0.1", server.port)
    server.stop()


def _client(tms: Peer, faults, sleeps: list[float]) -> PeerClient:
    return PeerClient(
        "DEV",
        tms,
        policy=RetryPolicy(attempts=3, first_delay_s=0.5),
        sleep=sleeps.append,
        timeouts=Timeouts(dimse_s=2.0),
        faults=faults,
    )


def test_without_faults_the_hook_sees_every_attempt(tms) -> None:
    seen: list[tuple[str, str]] = []
    client = _client(tms, lambda op, what, peer: seen.append((op, what)), [])
    assert client.echo("ping") == 0
    assert seen == [("C-ECHO", "ping")]


def test_refused_associations_are_retried_by_the_policy(tms) -> None:
    attempts: list[str] = []
    sleeps: list[float] = []

    def refuse_twice(op, what, peer):
        attempts.append(op)
        return InjectedNetworkFault("down", refuse_association=True) if len(attempts) <= 2 else None

    assert _client(tms, refuse_twice, sleeps).echo() == 0
    assert len(attempts) == 3
    assert sleeps == [0.5, 1.0]
    with pytest.raises(AssociationFailedError, match=r"injected: down.*gave up after 3"):
        _client(tms, lambda *a: InjectedNetworkFault("down", refuse_association=True), []).echo()


def test_status_abort_and_delay(tms) -> None:
    assert _client(tms, lambda *a: InjectedNetworkFault("busy", status=0xA700), []).echo() == 0xA700
    for phase in ("before", "after"):
        with pytest.raises(PeerCommunicationError, match=f"injected: aborted {phase}"):
            _client(tms, lambda *a, p=phase: InjectedNetworkFault(f"aborted {p}", abort=p), []).echo()
    sleeps: list[float] = []
    assert _client(tms, lambda *a: InjectedNetworkFault("slow", delay_s=1.5), sleeps).echo() == 0
    assert sleeps == [1.5]  # below the 2 s DIMSE timeout: a slow but good answer
    with pytest.raises(PeerCommunicationError, match="within the 2 s DIMSE timeout"):
        _client(tms, lambda *a: InjectedNetworkFault("slow", delay_s=2.0), []).echo()
