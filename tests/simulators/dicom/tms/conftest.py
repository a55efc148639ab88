"""Fixtures for the embedded-TMS tests: peers on ephemeral ports and a running TMS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tms_helpers import Peerling, make_config

from simulators.dicom.tms.server import TmsServer


@pytest.fixture
def watcher() -> Iterator[Peerling]:
    peer = Peerling("WATCHER").start()
    yield peer
    peer.stop()


@pytest.fixture
def device() -> Iterator[Peerling]:
    """The performing device's event receiver and C-MOVE destination (AE 'TDD')."""
    peer = Peerling("TDD").start()
    yield peer
    peer.stop()


@pytest.fixture
def tms(tmp_path, watcher, device) -> Iterator[TmsServer]:
    server = TmsServer(make_config(tmp_path / "tms", watcher.peer, device.peer))
    server.start()
    yield server
    server.stop()
