"""N-EVENT-REPORT sender: the TMS (UPS Event SCP) opens its own association to each subscriber.

One worker thread sends the queued reports in order, grouped by receiving AE (one association per AE
per batch). The receiving AE's address comes from the TMS AE table. The association proposes the UPS
Event SOP Class with SCP/SCU role selection (TMS = SCP, as in the reference's loopback set-up, §1.7); if
the peer rejects that context, it is proposed again without role selection. A report that cannot be
delivered is logged and dropped (PS3.4 CC.2.4.3: no obligation to queue or retry).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pynetdicom import AE, build_role
from pynetdicom.sop_class import UnifiedProcedureStepEvent, UnifiedProcedureStepPush

from simulators.dicom.peers import Peer
from simulators.dicom.tms.netutil import no_delay_association
from simulators.dicom.tms.ups_store import UpsEvent

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one report to one AE (kept for the log and for tests)."""

    receiving_ae: str
    event_type: int
    sop_instance_uid: str
    status: int | None  # None: not delivered (unknown AE, no association)
    problem: str = ""


class EventSender:
    """Queue and send UPS N-EVENT-REPORTs on a worker thread."""

    def __init__(
        self,
        ae_title: str,
        resolve: Callable[[str], Peer | None],
        *,
        timeout_s: float = 10.0,
        tls_args: tuple | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._resolve = resolve
        self._tls_args = tls_args
        self._on_delivery = on_delivery
        self._ae = AE(ae_title=ae_title)
        self._ae.acse_timeout = timeout_s
        self._ae.dimse_timeout = timeout_s
        self._ae.network_timeout = timeout_s
        self._ae.connection_timeout = timeout_s
        self._queue: queue.Queue[tuple[str, UpsEvent] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self.deliveries: list[Delivery] = []

    def start(self) -> None:
        """Start the worker thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tms-event-sender", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (up to ``timeout_s``), then stop the worker."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None
        self._ae.shutdown()

    def submit(self, events: Iterable[UpsEvent]) -> None:
        """Queue every (event, recipient) pair."""
        for event in events:
            for ae_title in event.recipients:
                with self._idle:
                    self._pending += 1
                self._queue.put((ae_title, event))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued report was attempted; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[tuple[str, UpsEvent]] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            by_ae: dict[str, list[UpsEvent]] = {}
            for ae_title, event in batch:
                by_ae.setdefault(ae_title, []).append(event)
            for ae_title, events in by_ae.items():
                try:
                    self._send(ae_title, events)
                except Exception as error:  # the sender must never die
                    LOG.exception("event reports to %s failed: %s", ae_title, error)
                finally:
                    with self._idle:
                        self._pending -= len(events)
                        self._idle.notify_all()

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if delivery.status is None or delivery.status != 0:
            LOG.warning(
                "N-EVENT-REPORT type %d for %s to %s: %s",
                delivery.event_type,
                delivery.sop_instance_uid,
                delivery.receiving_ae,
                delivery.problem or f"status 0x{delivery.status:04X}",
            )
        if self._on_delivery is not None:
            try:
                self._on_delivery(delivery)
            except Exception:
                LOG.exception("delivery callback failed")

    def _associate(self, peer: Peer):
        kwargs = {"ae_title": peer.ae_title}
        if self._tls_args is not None:
            kwargs["tls_args"] = self._tls_args
        contexts_ae = self._ae
        contexts_ae.requested_contexts = []
        contexts_ae.add_requested_context(UnifiedProcedureStepEvent)
        role = build_role(UnifiedProcedureStepEvent, scu_role=False, scp_role=True)
        assoc = contexts_ae.associate(peer.host, peer.port, ext_neg=[role], **kwargs)
        if assoc.is_established and not any(
            cx.abstract_syntax == UnifiedProcedureStepEvent for cx in assoc.accepted_contexts
        ):
            assoc.release()
            assoc = contexts_ae.associate(peer.host, peer.port, **kwargs)
        return assoc

    def _send(self, ae_title: str, events: list[UpsEvent]) -> None:
        peer = self._resolve(ae_title)
        if peer is None:
            for event in events:
                self._record(
                    Delivery(
                        ae_title, event.event_type, event.sop_instance_uid, None, "AE not in the AE table"
                    )
                )
            return
        assoc = self._associate(peer)
        if not assoc.is_established:
            for event in events:
                self._record(
                    Delivery(
                        ae_title,
                        event.event_type,
                        event.sop_instance_uid,
                        None,
                        f"no association with {peer}",
                    )
                )
            return
        no_delay_association(assoc)
        try:
            for index, event in enumerate(events):
                if not assoc.is_established:
                    for lost in events[index:]:
                        self._record(
                            Delivery(
                                ae_title, lost.event_type, lost.sop_instance_uid, None, "association lost"
                            )
                        )
                    break
                status, _ = assoc.send_n_event_report(
                    event.info,
                    event.event_type,
                    UnifiedProcedureStepPush,
                    event.sop_instance_uid,
                    meta_uid=UnifiedProcedureStepEvent,
                )
                code = int(status.Status) if status is not None and "Status" in status else None
                problem = "" if code is not None else "no response (timeout or abort)"
                self._record(Delivery(ae_title, event.event_type, event.sop_instance_uid, code, problem))
        finally:
            if assoc.is_established:
                assoc.release()
