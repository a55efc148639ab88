"""N-EVENT-REPORT sender: the TMS (UPS Event SCP) opens its own association to each subscriber.

One worker thread sends the queued reports in order, grouped by receiving AE. The receiving AE's address
comes from the TMS AE table. The association proposes the UPS Event SOP Class with SCP/SCU role selection
(TMS = SCP, as in the reference's loopback set-up, §1.7); if the peer rejects that context, it is
proposed again without role selection. An association is kept for the next reports to the same AE and
released after ``idle_release_s`` without one (a claimed workitem produces a report every few
milliseconds: state, progress, final state; opening and releasing an association for each cost ~20 ms
of the TMS's time and CPU on both sides while the performer was waiting for its own responses). A kept
association found gone (the subscriber restarted or released it) is replaced by a new one. A report
that cannot be delivered is logged and dropped (PS3.4 CC.2.4.3: no obligation to queue or retry).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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


DELIVERY_HISTORY = 1000


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
        idle_release_s: float = 0.5,
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
        self.idle_release_s = idle_release_s
        self._kept: dict[str, tuple[Any, float]] = {}  # receiving AE -> (association, idle since)
        # the most recent deliveries (diagnostics, tests): bounded, a TMS serves for months
        self.deliveries: collections.deque[Delivery] = collections.deque(maxlen=DELIVERY_HISTORY)

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
        try:
            while not stopping:
                try:
                    first = self._queue.get(timeout=self._idle_wait_s())
                except queue.Empty:
                    self._release_idle()
                    continue
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
                self._release_idle()
        finally:
            self._release_idle(everything=True)

    def _idle_wait_s(self) -> float | None:
        """How long the worker may wait for a report before a kept association is due for release."""
        if not self._kept:
            return None
        oldest = min(since for _, since in self._kept.values())
        return max(0.0, oldest + self.idle_release_s - time.monotonic())

    def _release_idle(self, everything: bool = False) -> None:
        now = time.monotonic()
        for ae_title, (assoc, since) in list(self._kept.items()):
            if everything or now - since >= self.idle_release_s or not assoc.is_established:
                del self._kept[ae_title]
                _release_quietly(assoc)

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
        kept, _ = self._kept.pop(ae_title, (None, 0.0))
        if kept is not None:
            if kept.is_established:
                # a kept association may have died unnoticed: what it could not send goes on a new one
                events = events[self._send_on(kept, ae_title, events, final=False) :]
                if not events:
                    self._kept[ae_title] = (kept, time.monotonic())
                    return
            _release_quietly(kept)
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
        self._send_on(assoc, ae_title, events, final=True)
        if assoc.is_established:
            self._kept[ae_title] = (assoc, time.monotonic())

    def _send_on(self, assoc, ae_title: str, events: list[UpsEvent], *, final: bool) -> int:
        """Send ``events`` in order on ``assoc``; how many were answered. A report left without an answer
        is recorded as lost when ``final``; otherwise the caller sends it (and the rest) again."""
        for index, event in enumerate(events):
            status = None
            if assoc.is_established:
                status, _ = assoc.send_n_event_report(
                    event.info,
                    event.event_type,
                    UnifiedProcedureStepPush,
                    event.sop_instance_uid,
                    meta_uid=UnifiedProcedureStepEvent,
                )
            code = int(status.Status) if status is not None and "Status" in status else None
            if code is None and not final:
                return index
            if code is None and not assoc.is_established:
                for lost in events[index:]:
                    self._record(
                        Delivery(ae_title, lost.event_type, lost.sop_instance_uid, None, "association lost")
                    )
                return index
            problem = "" if code is not None else "no response (timeout or abort)"
            self._record(Delivery(ae_title, event.event_type, event.sop_instance_uid, code, problem))
        return len(events)


def _release_quietly(assoc) -> None:
    try:
        if assoc.is_established:
            assoc.release()
    except Exception as error:  # a subscriber gone away: nothing left to release
        LOG.debug("releasing an event association: %s", error)
