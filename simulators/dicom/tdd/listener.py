"""The device's listening AE: Storage SCP (C-MOVE destination) and UPS Event receiver on one port.

One AE title and one port serve both roles, so a TMS needs a single entry for the device in its AE
table (move destination and Receiving AE of the subscription).
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Callable

from pynetdicom import AE, evt
from pynetdicom.sop_class import UnifiedProcedureStepEvent, Verification
from pynetdicom.transport import ThreadedAssociationServer

from simulators.dicom.tdd.event_receiver import make_event_handler
from simulators.dicom.tdd.messages import CancelRequest
from simulators.dicom.tdd.retry import AssociationFailedError
from simulators.dicom.tdd.scu import set_tcp_nodelay
from simulators.dicom.tdd.storage_scp import STORAGE_CLASSES, ReceivedObjects, make_store_handler

LOG = logging.getLogger(__name__)


class QuickShutdownServer(ThreadedAssociationServer):
    """pynetdicom's threaded server polling for shutdown every 50 ms instead of 500 ms."""

    poll_interval_s = 0.05

    def serve_forever(self, poll_interval: float | None = None) -> None:
        super().serve_forever(poll_interval or self.poll_interval_s)

    def shutdown(self) -> None:
        socketserver.BaseServer.shutdown(self)
        self.server_close()


def serve_in_background(ae: AE, address: tuple[str, int], evt_handlers: list) -> QuickShutdownServer:
    """Like ``ae.start_server(address, block=False)``; stop it with ``server.shutdown()``."""
    handlers = [(evt.EVT_CONN_OPEN, set_tcp_nodelay), *evt_handlers]
    server = ae.make_server(address, evt_handlers=handlers, server_class=QuickShutdownServer)
    thread = threading.Thread(target=server.serve_forever, name=f"{ae.ae_title}-server", daemon=True)
    thread.start()
    return server


class DeviceListener:
    """A pynetdicom server on ``host:port`` (port 0: an ephemeral port, see :attr:`port`)."""

    def __init__(
        self,
        ae_title: str,
        host: str,
        port: int,
        on_cancel_requested: Callable[[CancelRequest], None],
    ) -> None:
        self.ae_title = ae_title
        self.host = host
        self.requested_port = port
        self.received = ReceivedObjects()
        self._on_cancel = on_cancel_requested
        self._server = None

    def start(self) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)
        for sop_class in STORAGE_CLASSES:
            ae.add_supported_context(sop_class)
        # The TMS sends N-EVENT-REPORT as the UPS Event SCP on an association it opens (it may propose
        # SCP/SCU role selection, as in the reference UPS demo).
        ae.add_supported_context(UnifiedProcedureStepEvent, scu_role=False, scp_role=True)
        handlers = [
            (evt.EVT_C_STORE, make_store_handler(self.received)),
            (evt.EVT_N_EVENT_REPORT, make_event_handler(self._on_cancel)),
        ]
        try:
            self._server = ae.start_server(
                (self.host, self.requested_port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise AssociationFailedError(
                f"device {self.ae_title}: cannot listen on {self.host}:{self.requested_port}: {exc}"
            ) from None
        LOG.info("device %s listening on %s:%d", self.ae_title, self.host, self.port)

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
