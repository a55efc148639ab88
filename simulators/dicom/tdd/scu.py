"""DIMSE operations the device sends to one peer (TMS, OST), one short association per operation.

One association per operation keeps one DIMSE in flight per association (pynetdicom issues #596/#137),
survives a TMS restart between steps, and gives every network failure one place to be retried and
reported: an :class:`AssociationFailedError` or :class:`PeerCommunicationError` naming the AE, host,
port and what was being done. UPS N-ACTION/N-SET carry the Push SOP Class UID on the Pull (or Watch)
presentation context (``meta_uid``), as PS3.4 CC.3.1 requires.

With an :class:`AssociationPool` (the device passes one for the duration of one worklist pass), the
UPS/C-MOVE/C-ECHO operations to one peer reuse one idle association instead of opening their own: still
one DIMSE in flight per association (an association is checked out while in use), but without the
association set-up and release (~40 ms each on loopback with pynetdicom) for every operation.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    RTBeamsTreatmentRecordStorage,
    RTBrachyTreatmentRecordStorage,
    RTIonBeamsTreatmentRecordStorage,
    StudyRootQueryRetrieveInformationModelMove,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepPush,
    UnifiedProcedureStepWatch,
    Verification,
)

from simulators.dicom.assoc_pool import AssociationPool, Contexts
from simulators.dicom.assoc_tuning import tune_requestor
from simulators.dicom.peers import Peer
from simulators.dicom.tdd.retry import (
    AssociationFailedError,
    PeerCommunicationError,
    RetryPolicy,
    call_with_retry,
)

LOG = logging.getLogger(__name__)

PENDING_STATUSES = (0xFF00, 0xFF01)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Network timeouts in seconds (pynetdicom AE settings)."""

    connection_s: float = 5.0
    acse_s: float = 10.0
    dimse_s: float = 30.0
    network_s: float = 60.0


@dataclass(frozen=True, slots=True)
class MoveResult:
    """Final C-MOVE status with its sub-operation counts."""

    status: int
    completed: int
    failed: int
    warning: int

    @property
    def ok(self) -> bool:
        return self.status == 0x0000 and self.failed == 0


@dataclass(frozen=True, slots=True)
class InjectedNetworkFault:
    """What an injected network fault does to one attempt of one DIMSE operation (scenarios, tests).

    ``refuse_association``: no association (as if the peer were unreachable; the retry policy applies).
    ``status``: the peer "answers" this status without the request being sent (e.g. C-STORE 0xA700).
    ``abort``: ``"before"`` the request is sent, or ``"after"`` the peer processed it but before the
    device saw the response (the device cannot know whether it took effect).
    ``delay_s``: a slow response; at or beyond the DIMSE timeout it is a timeout (abort after).
    """

    description: str
    refuse_association: bool = False
    status: int | None = None
    abort: str | None = None
    delay_s: float = 0.0


# (operation, what, peer) -> the fault for this attempt, or None; called once per association attempt.
# operation is one of "C-ECHO", "C-FIND", "C-MOVE", "N-ACTION", "N-SET", "C-STORE".
NetworkFaultHook = Callable[[str, str, Peer], "InjectedNetworkFault | None"]


def set_tcp_nodelay(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler: disable Nagle's algorithm (as dcmtk does by default).

    pynetdicom sends a DIMSE command and its dataset as separate writes; with Nagle on, the second waits
    for the peer's delayed ACK (40 ms on Linux) on every message that carries a dataset.
    """
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as exc:
        LOG.debug("TCP_NODELAY not set: %s", exc)


def tune_on_open(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler of the associations the device requests: TCP_NODELAY and a release
    that does not sleep 10 ms (:func:`simulators.dicom.assoc_tuning.tune_requestor`)."""
    tune_requestor(event.assoc)


def _status_of(status_ds: Dataset | None) -> int | None:
    if status_ds is None or "Status" not in status_ds:
        return None
    return int(status_ds.Status)


#: Contexts a pooled association requests, so that any pooled operation can reuse it.
POOLED_CONTEXTS: tuple[str, ...] = (
    UnifiedProcedureStepPull,
    UnifiedProcedureStepWatch,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
#: Storage contexts a pooled association also requests: the records a device stores (RO-63).
POOLED_STORAGE: tuple[str, ...] = (
    RTBeamsTreatmentRecordStorage,
    RTBrachyTreatmentRecordStorage,
    RTIonBeamsTreatmentRecordStorage,
)
POOLED_STORAGE_SYNTAXES: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def pooled_request(contexts: Contexts) -> Contexts:
    """The contexts to request for a new pooled association: the operation's own, then the pooled ones."""
    wanted = list(contexts)
    have = {abstract for abstract, _ in contexts}
    wanted += [(abstract, None) for abstract in POOLED_CONTEXTS if abstract not in have]
    # one context per transfer syntax, so that a record in either syntax finds its context accepted
    wanted += [(a, [ts]) for a in POOLED_STORAGE if a not in have for ts in POOLED_STORAGE_SYNTAXES]
    return wanted


def _identifier_logging_as_logger() -> None:
    """Let pynetdicom pretty-print C-FIND/C-MOVE identifiers only when its logger would show them.

    With its default settings pynetdicom formats every request and response identifier line by line
    (tens of ms per worklist query) even when its logger discards them.
    """
    enabled = logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)
    _config.LOG_REQUEST_IDENTIFIERS = enabled
    _config.LOG_RESPONSE_IDENTIFIERS = enabled


class PeerClient:
    """Sends DIMSE requests from ``calling_ae`` to ``peer``, retrying association failures."""

    def __init__(
        self,
        calling_ae: str,
        peer: Peer,
        *,
        policy: RetryPolicy,
        sleep: Callable[[float], object],
        timeouts: Timeouts | None = None,
        faults: NetworkFaultHook | None = None,
        pool: AssociationPool | None = None,
    ) -> None:
        self.calling_ae = calling_ae
        self.peer = peer
        self.policy = policy
        self.sleep = sleep
        self.timeouts = timeouts or Timeouts()
        self.faults = faults  # off by default: only scenarios and tests inject network faults
        self.pool = pool  # None: one association per operation

    # -- plumbing --------------------------------------------------------------------------------
    def _ae(self, contexts: list[tuple[str, list[str] | None]]) -> AE:
        ae = AE(ae_title=self.calling_ae)
        ae.connection_timeout = self.timeouts.connection_s
        ae.acse_timeout = self.timeouts.acse_s
        ae.dimse_timeout = self.timeouts.dimse_s
        ae.network_timeout = self.timeouts.network_s
        for abstract, syntaxes in contexts:
            if syntaxes:
                ae.add_requested_context(abstract, syntaxes)
            else:
                ae.add_requested_context(abstract)
        return ae

    def _associate(self, contexts: list[tuple[str, list[str] | None]], what: str) -> Association:
        assoc = self._ae(contexts).associate(
            self.peer.host,
            self.peer.port,
            ae_title=self.peer.ae_title,
            evt_handlers=[(evt.EVT_CONN_OPEN, tune_on_open)],
        )
        if assoc.is_established:
            return assoc
        if assoc.is_rejected and assoc.acceptor.primitive is not None:
            prim = assoc.acceptor.primitive
            detail = f"association rejected ({prim.result_str}, {prim.source_str}: {prim.reason_str})"
        else:
            detail = "no association (connection refused, unreachable or aborted)"
        raise AssociationFailedError(f"{what}: {self.peer}: {detail}")

    def _run(
        self,
        contexts: list[tuple[str, list[str] | None]],
        what: str,
        body: Callable[[Association], Any],
        operation: str = "",
        answer: Callable[[int], Any] | None = None,
    ):
        """One operation on its own association, retried; ``answer(status)`` builds the result of an
        injected failure status (operations without it turn one into a PeerCommunicationError)."""

        def once():
            fault = self.faults(operation, what, self.peer) if self.faults is not None else None
            if fault is None:
                return self._attempt(contexts, what, body)
            return self._faulty_attempt(contexts, what, body, fault, answer)

        return call_with_retry(once, self.policy, self.sleep, what)

    def _attempt(self, contexts, what: str, body: Callable[[Association], Any]):
        _identifier_logging_as_logger()
        pooled = self.pool is not None and all(
            abstract in POOLED_CONTEXTS or abstract in POOLED_STORAGE for abstract, _ in contexts
        )
        if not pooled:
            assoc = self._associate(contexts, what)
            try:
                return body(assoc)
            finally:
                if assoc.is_established:
                    assoc.release()
        assert self.pool is not None
        key = (self.calling_ae, self.peer.host, self.peer.port, self.peer.ae_title)
        assoc = self.pool.take(key, contexts)
        if assoc is None:
            assoc = self._associate(pooled_request(contexts), what)
        done = False
        try:
            result = body(assoc)
            done = True
            return result
        finally:
            if done:
                self.pool.give_back(key, assoc)
            elif assoc.is_established:
                assoc.release()

    def _faulty_attempt(
        self, contexts, what: str, body, fault: InjectedNetworkFault, answer: Callable[[int], Any] | None
    ):
        injected = f"(injected: {fault.description})"
        if fault.refuse_association:
            raise AssociationFailedError(f"{what}: {self.peer}: no association {injected}")
        if fault.status is not None:
            if answer is None:
                raise PeerCommunicationError(
                    f"{what}: {self.peer}: failed with status 0x{fault.status:04X} {injected}"
                )
            return answer(fault.status)
        abort = fault.abort
        if fault.delay_s > 0:
            if fault.delay_s >= self.timeouts.dimse_s:
                abort = "after"
                timeout = f"no response within the {self.timeouts.dimse_s:g} s DIMSE timeout"
                injected = f"(injected: {fault.description}; {timeout})"
            else:
                self.sleep(fault.delay_s)
        assoc = self._associate(contexts, what)
        try:
            if abort == "before":
                assoc.abort()
                raise PeerCommunicationError(f"{what}: {self.peer}: association aborted {injected}")
            result = body(assoc)
            if abort == "after":
                assoc.abort()
                raise PeerCommunicationError(
                    f"{what}: {self.peer}: association aborted before the response arrived {injected}"
                )
            return result
        finally:
            if assoc.is_established:
                assoc.release()

    def _lost(self, what: str) -> PeerCommunicationError:
        return PeerCommunicationError(f"{what}: {self.peer}: no response (association aborted or timed out)")

    # -- operations ------------------------------------------------------------------------------
    def echo(self, what: str = "C-ECHO") -> int:
        def body(assoc: Association) -> int:
            status = _status_of(assoc.send_c_echo())
            if status is None:
                raise self._lost(what)
            return status

        return self._run([(Verification, None)], what, body, "C-ECHO", lambda status: status)

    def find_workitems(
        self, identifier: Dataset, what: str, each: Callable[[Dataset], Any] | None = None
    ) -> list:
        """UPS Pull C-FIND; the pending identifiers, or PeerCommunicationError if it did not finish.

        With ``each``, what it makes of each identifier (None: left out), called as the responses
        arrive, so that reading one overlaps with the peer sending the next.
        """

        def body(assoc: Association) -> list:
            found = []
            final = None
            for status_ds, ds in assoc.send_c_find(identifier, UnifiedProcedureStepPull):
                status = _status_of(status_ds)
                if status is None:
                    raise self._lost(what)
                if status in PENDING_STATUSES and ds is not None:
                    made = ds if each is None else each(ds)
                    if made is not None:
                        found.append(made)
                else:
                    final = status
            if final not in (0x0000, None):
                raise PeerCommunicationError(f"{what}: {self.peer}: C-FIND failed with status 0x{final:04X}")
            return found

        return self._run([(UnifiedProcedureStepPull, None)], what, body, "C-FIND")

    def move(self, identifier: Dataset, destination_ae: str, what: str) -> MoveResult:
        """Study Root C-MOVE to ``destination_ae``; the final status and counts."""

        def body(assoc: Association) -> MoveResult:
            last: Dataset | None = None
            for status_ds, _ in assoc.send_c_move(
                identifier, destination_ae, StudyRootQueryRetrieveInformationModelMove
            ):
                if _status_of(status_ds) is None:
                    raise self._lost(what)
                last = status_ds
            if last is None:
                raise self._lost(what)

            def count(keyword: str) -> int:
                return int(last.get(keyword, 0) or 0)

            return MoveResult(
                int(last.Status),
                count("NumberOfCompletedSuboperations"),
                count("NumberOfFailedSuboperations"),
                count("NumberOfWarningSuboperations"),
            )

        return self._run(
            [(StudyRootQueryRetrieveInformationModelMove, None)],
            what,
            body,
            "C-MOVE",
            lambda status: MoveResult(status, 0, 1, 0),
        )

    def n_action(
        self, info: Dataset, action_type: int, ups_uid: str, what: str, watch: bool = False
    ) -> tuple[int, Dataset | None]:
        """UPS N-ACTION (Push class UID on the Pull, or Watch, context); status and reply."""
        context = UnifiedProcedureStepWatch if watch else UnifiedProcedureStepPull

        def body(assoc: Association) -> tuple[int, Dataset | None]:
            status_ds, reply = assoc.send_n_action(
                info, action_type, UnifiedProcedureStepPush, ups_uid, meta_uid=context
            )
            status = _status_of(status_ds)
            if status is None:
                raise self._lost(what)
            return status, reply

        return self._run([(context, None)], what, body, "N-ACTION", lambda status: (status, None))

    def n_set(self, modification: Dataset, ups_uid: str, what: str) -> int:
        """UPS N-SET (Push class UID on the Pull context); the status."""

        def body(assoc: Association) -> int:
            status_ds, _ = assoc.send_n_set(
                modification, UnifiedProcedureStepPush, ups_uid, meta_uid=UnifiedProcedureStepPull
            )
            status = _status_of(status_ds)
            if status is None:
                raise self._lost(what)
            return status

        return self._run([(UnifiedProcedureStepPull, None)], what, body, "N-SET", lambda status: status)

    def store(self, ds: Dataset, what: str) -> int:
        """C-STORE ``ds`` (its file meta must give the transfer syntax); the status."""
        syntax = ds.file_meta.TransferSyntaxUID
        syntaxes = [str(syntax)] + [
            s for s in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) if s != syntax
        ]

        def body(assoc: Association) -> int:
            status = _status_of(assoc.send_c_store(ds))
            if status is None:
                raise self._lost(what)
            return status

        return self._run([(str(ds.SOPClassUID), syntaxes)], what, body, "C-STORE", lambda status: status)
