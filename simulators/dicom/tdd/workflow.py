"""The device side of IHE-RO TDW-II: RO-58 .. RO-65 for one virtual treatment delivery device.

One pass (:meth:`Device.run_once`):

1. Recovery: re-send journaled records, finish journaled claims (a crash or a network failure left
   them): COMPLETED or CANCELED with what was really delivered, never left IN PROGRESS.
2. RO-58 worklist query; items sorted by priority, then scheduled start.
3. RO-59 C-MOVE of the RT Plan from the item's Retrieve AE to the device's own Storage SCP.
4. RO-60 claim: a new Transaction UID, journaled *before* the N-ACTION; a 0xC302 means another device
   won. Then subscribe (Watch) to hear a Cancel Requested for this workitem.
5. RO-61 C-MOVE of the RT Beams Delivery Instruction -> beam tasks.
6. RO-62 progress N-SETs: each beam's start with its beam number in progress (the first at 0 %), every
   ``progress_step_percent``, and 100 % once the record is journaled (one N-SET per step: the start is
   not reported twice, as "0 %" and "0 %, beam 1", nor the end, as "100 %, beam N" and "100 %").
7. RO-63 C-STORE of the record to the OST (journaled first; kept and re-sent until acknowledged; the
   UPS stays IN PROGRESS meanwhile so that the Output Information is true when sent).
8. RO-64 final N-SET (Output Information Sequence, or the cancellation reason) and RO-65 N-ACTION.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from simulators.devices.session import SessionOutcome, SessionRequest
from simulators.dicom import codes
from simulators.dicom.codes import Code
from simulators.dicom.peers import Peer
from simulators.dicom.tdd import messages as msg
from simulators.dicom.tdd.config import DeviceConfig, DeviceConfigError
from simulators.dicom.tdd.delivery import Deliver, DeliveryProgress, StopToken, session_deliver
from simulators.dicom.tdd.journal import ClaimEntry, Journal, JournalError, PendingRecord, Phase
from simulators.dicom.tdd.listener import DeviceListener
from simulators.dicom.tdd.retry import (
    NO_RETRY,
    AssociationFailedError,
    PeerCommunicationError,
)
from simulators.dicom.tdd.scu import AssociationPool, NetworkFaultHook, PeerClient
from simulators.errors import PlanReadError, RtsimError
from simulators.plans.brachy_model import BrachyTask
from simulators.plans.model import BeamTask

LOG = logging.getLogger(__name__)

NetworkError = (AssociationFailedError, PeerCommunicationError)
STORE_OK = (0x0000, 0xB000, 0xB006, 0xB007)
TERMINATION_CODE_CANCEL = "UPS-CANCEL"
TERMINATION_CODE_SHUTDOWN = "SHUTDOWN"
END_DESCRIPTION = "all beams delivered"  # RO-62 100 % and the RO-64 of a COMPLETED workitem


class TmsUnavailableError(RtsimError):
    """The worklist could not be queried (the message names the AE, host, port and what failed)."""


class OutcomeState:
    COMPLETED = codes.STATE_COMPLETED
    CANCELED = codes.STATE_CANCELED
    NOT_CLAIMED = "NOT_CLAIMED"  # another device won, or the inputs could not be fetched before claiming
    PENDING = "PENDING"  # claimed; not finished yet (network); kept in the journal and retried
    FAILED = "FAILED"  # the TMS refused to end the workitem; the message says why


@dataclass
class WorkitemOutcome:
    """What happened to one workitem in this run."""

    ups_uid: str
    state: str
    transaction_uid: str = ""
    label: str = ""
    reason: str = ""
    refused_reasons: list[str] = field(default_factory=list)
    record_uid: str = ""
    record_path: Path | None = None
    recovered: bool = False  # finished from the journal (after a crash or a network failure)
    session: SessionOutcome | None = None


BeamTaskParser = Callable[[Dataset], object]


def _default_beam_task_parser(bdi: Dataset) -> object:
    uid = bdi.get("SOPInstanceUID", "")
    if str(bdi.get("SOPClassUID", "")) == codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE:
        from simulators.dicom.brachy_instruction import read_brachy_instruction  # afterloaders

        return read_brachy_instruction(bdi, source=f"RT Brachy Application Setup Delivery Instruction {uid}")
    from simulators.dicom.bdi import read_bdi  # the TMS side owns the BDI reader

    return read_bdi(bdi, source=f"RT Beams Delivery Instruction {uid}".strip())


def _as_beam_tasks(parsed: object) -> tuple[BeamTask, ...]:
    """Beam tasks from a parser result (a sequence of BeamTask, or an object with ``beam_tasks``).

    A beam listed in the Omitted Beam Task Sequence (``omitted_beams``) is never delivered.
    """
    tasks = tuple(getattr(parsed, "beam_tasks", parsed))  # type: ignore[arg-type]
    if tasks and all(isinstance(task, BrachyTask) for task in tasks):
        return tasks  # type: ignore[return-value]  # afterloader tasks: omitted channels are inside them
    for task in tasks:
        if not isinstance(task, BeamTask):
            raise RtsimError(f"BDI parser returned {type(task).__name__}, expected BeamTask")
    omitted = {int(number) for number, *_ in getattr(parsed, "omitted_beams", ())}
    kept = tuple(t for t in tasks if t.beam_number not in omitted)
    if len(kept) != len(tasks):
        LOG.warning("beam(s) %s are both instructed and omitted: omitted", sorted(omitted))
    if not kept:
        raise RtsimError("no beam left to deliver (every beam task is omitted)")
    return kept


def _ensure_file_meta(ds: Dataset) -> Dataset:
    """A dataset sent by C-STORE needs file_meta.TransferSyntaxUID (DEVELOPERS.md trap)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


class _WorkitemAbort(Exception):  # noqa: N818 (internal control flow)
    """Ends one workitem early with a ready outcome."""

    def __init__(self, outcome: WorkitemOutcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


class Device:
    """One virtual device on the network. Use as a context manager, or call start()/close()."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        deliver: Deliver | None = None,
        parse_beam_tasks: BeamTaskParser | None = None,
        sleep: Callable[[float], object] | None = None,
        now: Callable[[], datetime] | None = None,
        checkpoint: Callable[[str, str], None] | None = None,
        network_faults: NetworkFaultHook | None = None,
    ) -> None:
        """``checkpoint(name, ups_uid)`` is called at each step (fault injection and tests may raise).

        Checkpoints: ``before_claim``, ``claimed``, ``delivering``, ``record_journaled``,
        ``record_stored``, ``before_final``. ``network_faults`` is handed to every
        :class:`~simulators.dicom.tdd.scu.PeerClient` (injected network faults; off by default).
        """
        self.config = config
        self.deliver = deliver or session_deliver
        self.parse_beam_tasks = parse_beam_tasks or _default_beam_task_parser
        self.sleep = sleep or time.sleep
        self.now = now or datetime.now
        self.checkpoint = checkpoint or (lambda name, ups_uid: None)
        self.network_faults = network_faults
        self.journal: Journal | None = None
        self.listener = DeviceListener(config.ae_title, config.host, config.port, self._on_cancel_requested)
        self._lock = threading.Lock()
        self._current_ups: str | None = None
        self._token: StopToken | None = None
        self._cancel: msg.CancelRequest | None = None
        self._stop_event: threading.Event | None = None
        self._claim_failure = ""
        self._final_failure = ""
        self._delivery_progress_seen = False
        self._reporter: _ProgressReporter | None = None
        self._watching: str | None = None  # the UPS this device subscribed to (Watch)
        # consecutive operations reuse an association per peer (released after 0.5 s idle, and on close)
        self._pool = AssociationPool()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Device:
        self.journal = Journal(self.config.journal_path)
        self.listener.start()
        return self

    def close(self) -> None:
        self._pool.close()
        self.listener.stop()

    def __enter__(self) -> Device:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def peer(self) -> Peer:
        """How others reach this device."""
        return Peer(self.config.ae_title, self.config.host, self.port)

    # -- peers -----------------------------------------------------------------------------------
    def _client(self, peer: Peer, retry: bool = True) -> PeerClient:
        return PeerClient(
            self.config.ae_title,
            peer,
            policy=self.config.retry if retry else NO_RETRY,
            sleep=self.sleep,
            timeouts=self.config.timeouts,
            faults=self.network_faults,
            pool=self._pool,
        )

    @property
    def _tms(self) -> PeerClient:
        return self._client(self.config.tms)

    # -- the loop --------------------------------------------------------------------------------
    def run(self, stop_event: threading.Event, once: bool = False) -> list[WorkitemOutcome]:
        """Poll and deliver until ``stop_event`` is set (or one pass if ``once``)."""
        outcomes: list[WorkitemOutcome] = []
        self._stop_event = stop_event
        while not stop_event.is_set():
            try:
                found = self.run_once()
            except TmsUnavailableError as exc:
                if once:
                    raise
                LOG.error("%s", exc)
                found = []
            except JournalError:
                raise  # nothing can be kept safely: stop the device
            except Exception as exc:
                if once:
                    raise
                LOG.error("device loop: unexpected %s: %s; polling again", type(exc).__name__, exc)
                LOG.debug("device loop failure", exc_info=True)
                found = []
            # a workitem still waiting for the network is reported once it ends, not on every poll
            outcomes.extend(o for o in found if not (o.recovered and o.state == OutcomeState.PENDING))
            if once:
                break
            stop_event.wait(self.config.poll_interval_s)
        return outcomes

    def run_once(self) -> list[WorkitemOutcome]:
        """Recovery, then one worklist query; delivers at most one workitem."""
        if self.journal is None:
            raise RtsimError("Device.run_once() before start()")
        outcomes = self.recover()
        for item in self.query_worklist():
            outcome = self.process(item)
            outcomes.append(outcome)
            if outcome.state != OutcomeState.NOT_CLAIMED:
                break
        return outcomes

    # -- RO-58 -----------------------------------------------------------------------------------
    def query_worklist(self) -> list[msg.Workitem]:
        """RO-58: SCHEDULED items for this station and workitem code today, best first."""
        cfg = self.config
        what = f"RO-58 worklist query (station {cfg.station})"
        query = msg.worklist_query(cfg.station, cfg.workitem_code, self.now().date())

        def eligible_item(ds: Dataset) -> msg.Workitem | None:
            try:
                item = msg.parse_workitem(ds)
            except msg.WorkitemError as exc:
                LOG.error("%s: item skipped: %s", what, exc)
                return None
            return item if msg.eligible(item, cfg.station, cfg.workitem_code) else None

        try:
            items = self._tms.find_workitems(query, what, eligible_item)  # read while more arrive
        except NetworkError as exc:
            raise TmsUnavailableError(str(exc)) from None
        items.sort(key=msg.Workitem.sort_key)
        LOG.info("%s: %d item(s)", what, len(items))
        return items

    # -- retrieval (RO-59, RO-61) ------------------------------------------------------------------
    def _retrieve(self, ups_uid: str, ref: msg.InputReference, step: str, name: str) -> Dataset:
        """C-MOVE one input to this device and return it (RtsimError naming the UPS, AE and UID)."""
        what = f"{step} retrieve {name} {ref.sop_instance_uid} for UPS {ups_uid}"
        if not ref.retrieve_ae:
            raise RtsimError(f"{what}: Input Information gives no Retrieve AE Title (0008,0054)")
        peer = self.config.peer(ref.retrieve_ae)
        self.listener.received.take(ref.sop_instance_uid)
        result = self._client(peer).move(msg.move_identifier(ref), self.config.ae_title, what)
        ds = self.listener.received.take(ref.sop_instance_uid)
        if ds is None:
            raise RtsimError(
                f"{what} from {peer}: not received (C-MOVE status 0x{result.status:04X}, "
                f"{result.completed} completed, {result.failed} failed sub-operations)"
            )
        if str(ds.get("SOPClassUID", "")) != ref.sop_class_uid:
            raise RtsimError(
                f"{what}: received SOP Class {ds.get('SOPClassUID', '?')}, "
                f"the worklist said {ref.sop_class_uid}"
            )
        LOG.info("%s: received from %s", what, peer)
        return ds

    # -- one workitem ----------------------------------------------------------------------------
    def process(self, item: msg.Workitem) -> WorkitemOutcome:
        """RO-59 .. RO-65 for one worklist item."""
        try:
            return self._process(item)
        except _WorkitemAbort as abort:
            return abort.outcome
        finally:
            self._settle_progress()
            with self._lock:
                self._current_ups = None
                self._token = None
                self._cancel = None

    def _process(self, item: msg.Workitem) -> WorkitemOutcome:
        ups = item.ups_uid
        assert self.journal is not None
        LOG.info("UPS %s (%s): selected, priority %s", ups, item.label or "no label", item.priority or "-")
        # RO-59: the plan, before claiming (a failure leaves the item SCHEDULED for later or for others)
        try:
            plan_ref = item.plan
            plan = self._retrieve(ups, plan_ref, "RO-59", "RT Plan")
        except (RtsimError, *NetworkError) as exc:
            LOG.error("%s", exc)
            return WorkitemOutcome(ups, OutcomeState.NOT_CLAIMED, label=item.label, reason=str(exc))

        # RO-60: claim, journaled first
        entry = ClaimEntry(
            ups_uid=ups,
            transaction_uid=generate_uid(),
            phase=Phase.CLAIMING,
            tms_ae=self.config.tms.ae_title,
            station_code=msg.code_to_dict(item.station_code or self._own_station_code()),
            workitem_code=msg.code_to_dict(item.workitem_code or self.config.workitem_code),
            record_ae=self._record_destination(plan_ref),
        )
        self.journal.save_claim(entry)
        self.checkpoint("before_claim", ups)
        if not self._claim(entry, item):
            self.journal.remove_claim(ups)
            return WorkitemOutcome(
                ups, OutcomeState.NOT_CLAIMED, entry.transaction_uid, item.label, self._claim_failure
            )
        entry.phase = Phase.CLAIMED
        self.journal.save_claim(entry)
        with self._lock:
            self._current_ups = ups
            self._token = StopToken()
            token = self._token
        self.checkpoint("claimed", ups)
        if self.config.watch:
            self._subscribe(ups)
        try:
            return self._deliver_claimed(item, entry, plan, plan_ref, token)
        finally:
            self._end_watch()

    def _own_station_code(self) -> Code:
        return Code(self.config.station, codes.STATION_CODING_SCHEME, codes.STATION_CODE_MEANING)

    def _record_destination(self, plan_ref: msg.InputReference) -> str:
        return self.config.ost.ae_title if self.config.ost is not None else plan_ref.retrieve_ae

    def _claim(self, entry: ClaimEntry, item: msg.Workitem) -> bool:
        """RO-60 N-ACTION IN PROGRESS. False (with ``self._claim_failure``) if the claim did not hold."""
        ups = entry.ups_uid
        what = f"RO-60 claim UPS {ups}"
        try:
            status, _ = self._tms.n_action(
                msg.state_change(codes.STATE_IN_PROGRESS, entry.transaction_uid),
                codes.ACTION_CHANGE_STATE,
                ups,
                what,
            )
        except NetworkError as exc:
            # Unknown whether the claim took effect: the journal keeps it; recovery resolves it.
            LOG.error("%s", exc)
            raise _WorkitemAbort(
                WorkitemOutcome(ups, OutcomeState.PENDING, entry.transaction_uid, item.label, str(exc))
            ) from None
        if status == codes.SUCCESS:
            LOG.info("%s: claimed (Transaction UID %s)", what, entry.transaction_uid)
            return True
        if status == codes.FAILURE_ALREADY_IN_PROGRESS:
            self._claim_failure = f"{what}: already IN PROGRESS (0xC302): claimed by another performer"
        else:
            self._claim_failure = f"{what}: refused by {self.config.tms} with status 0x{status:04X}"
        LOG.warning("%s", self._claim_failure)
        return False

    def _subscribe(self, ups: str) -> None:
        self._watching = ups  # unsubscribed by _end_watch whatever the answer
        what = f"Watch: subscribe to UPS {ups} (Receiving AE {self.config.ae_title})"
        try:
            status, _ = self._client(self.config.tms, retry=False).n_action(
                msg.subscription(self.config.ae_title), codes.ACTION_SUBSCRIBE, ups, what, watch=True
            )
        except NetworkError as exc:
            LOG.warning("%s: %s; a cancel request will not be heard", what, exc)
            return
        if status not in (codes.SUCCESS, codes.WARNING_DELETION_LOCK_NOT_GRANTED):
            LOG.warning("%s: status 0x%04X; a cancel request will not be heard", what, status)

    def _end_watch(self) -> None:
        """Unsubscribe from the workitem being watched, if any (once it ended, whichever way)."""
        ups, self._watching = self._watching, None
        if ups is not None:
            self._unsubscribe(ups)

    def _unsubscribe(self, ups: str) -> None:
        what = f"Watch: unsubscribe from UPS {ups}"
        with contextlib.suppress(*NetworkError):
            status, _ = self._client(self.config.tms, retry=False).n_action(
                msg.unsubscription(self.config.ae_title), codes.ACTION_UNSUBSCRIBE, ups, what, watch=True
            )
            if status != codes.SUCCESS:
                LOG.info("%s: status 0x%04X", what, status)

    def _on_cancel_requested(self, cancel: msg.CancelRequest) -> None:
        """Called on the listener's thread: only records the request and stops the beam."""
        with self._lock:
            if cancel.ups_uid != self._current_ups or self._token is None:
                LOG.info("UPS %s: cancel request ignored (not the workitem in delivery)", cancel.ups_uid)
                return
            self._cancel = cancel
            token = self._token
        reason = cancel.reason_text or "no reason given"
        token.request(
            "OPERATOR",
            TERMINATION_CODE_CANCEL,
            f"cancel requested by {cancel.requesting_ae or 'the TMS'}: {reason}",
        )

    # -- after the claim ---------------------------------------------------------------------------
    def _deliver_claimed(
        self,
        item: msg.Workitem,
        entry: ClaimEntry,
        plan: Dataset,
        plan_ref: msg.InputReference,
        token: StopToken,
    ) -> WorkitemOutcome:
        ups = item.ups_uid
        # RO-61: the delivery instruction
        try:
            beam_tasks = self._beam_tasks(item, plan_ref)
        except _Refusal as refusal:
            self._decide(entry, codes.STATE_CANCELED, refusal.reason, refusal.code)
            return self._finish_entry(entry, item.label, refused=[refusal.reason])

        performed_start = self.now()
        entry.performed_start = msg.dicom_dt(performed_start)
        entry.phase = Phase.DELIVERING
        self.journal.save_claim(entry)
        self.checkpoint("delivering", ups)
        # RO-62 starts with the first beam's own report (0 %, beam N in progress) from the delivery
        if token.requested:  # cancel requested before the first beam: nothing to deliver
            self._progress(entry, 0.0, None, "ready: no beam delivered yet")
            return self._cancel_before_beam(entry, item, token)

        request = SessionRequest(
            plan_dataset=plan,
            machine=self.config.machine,
            source=f"UPS {ups}: RT Plan {plan_ref.sop_instance_uid} from {plan_ref.retrieve_ae}",
            answers_to=self.config.answers_to,
            beam_tasks=beam_tasks,
            seed=self.config.seed,
            session_start=performed_start,
            require_approved=self.config.require_approved,
            operator_name=self.config.operator_name,
            referenced_record_uids=tuple(
                ref.sop_instance_uid for ref in item.inputs if ref.sop_class_uid in _RECORD_CLASSES
            ),
        )
        outcome = self._run_delivery(entry, request, token)
        entry.performed_end = msg.dicom_dt(self.now())
        if isinstance(outcome, _Refusal):
            self._decide(entry, codes.STATE_CANCELED, outcome.reason, outcome.code)
            return self._finish_entry(entry, item.label, refused=[outcome.reason])
        if outcome.refused:
            reason = "plan refused by the device: " + "; ".join(outcome.refused_reasons)
            self._decide(entry, codes.STATE_CANCELED, reason, msg.REASON_RESOURCE_INADEQUATE)
            return self._finish_entry(
                entry, item.label, refused=list(outcome.refused_reasons), session=outcome
            )
        return self._after_delivery(entry, item, outcome, token)

    def _beam_tasks(self, item: msg.Workitem, plan_ref: msg.InputReference) -> tuple[BeamTask, ...] | None:
        ups = item.ups_uid
        bdi_ref = item.delivery_instruction
        if bdi_ref is None:
            LOG.warning(
                "UPS %s: no RT Beams Delivery Instruction in the Input Information; "
                "delivering every beam of fraction group 1",
                ups,
            )
            return None
        try:
            bdi = self._retrieve(ups, bdi_ref, "RO-61", "RT Beams Delivery Instruction")
        except (RtsimError, *NetworkError) as exc:
            raise _Refusal(str(exc), msg.REASON_OBJECT_SET_INCOMPLETE) from None
        referenced = [
            str(r.get("ReferencedSOPInstanceUID", "")) for r in bdi.get("ReferencedRTPlanSequence") or []
        ]
        if referenced and plan_ref.sop_instance_uid not in referenced:
            raise _Refusal(
                f"UPS {ups}: RT Beams Delivery Instruction {bdi_ref.sop_instance_uid} references RT Plan "
                f"{', '.join(referenced)} in Referenced RT Plan Sequence (300C,0002), "
                f"but the worklist item's plan is {plan_ref.sop_instance_uid}",
                msg.REASON_OBJECTS_INCORRECTLY_FORMATTED,
            )
        try:
            return _as_beam_tasks(self.parse_beam_tasks(bdi))
        except RtsimError as exc:
            raise _Refusal(
                f"UPS {ups}: RT Beams Delivery Instruction {bdi_ref.sop_instance_uid}: {exc}",
                msg.REASON_OBJECTS_INCORRECTLY_FORMATTED,
            ) from None

    def _run_delivery(self, entry: ClaimEntry, request: SessionRequest, token: StopToken):
        """Run the session; progress N-SETs go out from a reporter thread meanwhile."""
        reporter = _ProgressReporter(self, entry)
        reporter.start()
        shutdown_watch = _ShutdownWatch(self._stop_event, token)
        shutdown_watch.start()
        try:
            outcome = self.deliver(request, token, reporter.on_progress)
        except PlanReadError as exc:
            outcome = _Refusal(f"UPS {entry.ups_uid}: {exc}", msg.REASON_OBJECTS_INCORRECTLY_FORMATTED)
        except RtsimError as exc:
            outcome = _Refusal(f"UPS {entry.ups_uid}: {exc}", msg.REASON_RESOURCE_INADEQUATE)
        except Exception as exc:
            LOG.debug("delivery failed", exc_info=True)
            outcome = _Refusal(
                f"UPS {entry.ups_uid}: delivery failed inside the device ({type(exc).__name__}: {exc})",
                msg.REASON_EQUIPMENT_FAILURE,
            )
        except BaseException:  # the device is going down mid-delivery (a crash): what the reporter has
            shutdown_watch.stop()  # queued is sent and journaled first, as before a real death
            reporter.drain()
            raise
        shutdown_watch.stop()
        reporter.close()  # its last N-SET may still be on its way: see _settle_progress
        self._reporter = reporter
        entry.progress_percent = reporter.last_percent
        entry.beam_in_progress = reporter.last_beam
        self._delivery_progress_seen = reporter.calls > 0
        if not self._delivery_progress_seen:
            # no beam reported its start (refused, or a deliverer without progress): RO-62 still tells the
            # TMS where the step stands, at 0 %, before any per-beam report or the final update
            self._progress(entry, 0.0, None, "no beam started")
        return outcome

    def _cancel_before_beam(self, entry: ClaimEntry, item: msg.Workitem, token: StopToken) -> WorkitemOutcome:
        reason = token.reason or "stopped before the first beam"
        code = (
            self._cancel.reason_code if self._cancel and self._cancel.reason_code else msg.REASON_UNSPECIFIED
        )
        entry.performed_end = msg.dicom_dt(self.now())
        self._decide(entry, codes.STATE_CANCELED, f"{reason}; nothing was delivered", code)
        return self._finish_entry(entry, item.label)

    def _after_delivery(
        self, entry: ClaimEntry, item: msg.Workitem, outcome: SessionOutcome, token: StopToken
    ) -> WorkitemOutcome:
        ups = entry.ups_uid
        result = outcome.result
        completed = result is not None and result.completed
        if not self._delivery_progress_seen and result is not None:
            self._report_units(entry, result)
        if result is not None:
            specified = sum(u.specified_meterset for u in result.units)
            delivered = sum(u.delivered_meterset for u in result.units)
            entry.progress_percent = 100.0 * delivered / specified if specified > 0 else 0.0
        if completed:
            self._decide(entry, codes.STATE_COMPLETED, "", None)
        else:
            self._decide(entry, codes.STATE_CANCELED, *self._interruption(outcome, token))
        record = outcome.record
        record_path = None
        if record is not None:
            _ensure_file_meta(record)
            entry.record_uid = str(record.SOPInstanceUID)
            entry.record_class_uid = str(record.SOPClassUID)
            entry.record_study_uid = str(record.get("StudyInstanceUID", ""))
            entry.record_series_uid = str(record.get("SeriesInstanceUID", ""))
            journaled = self.journal.add_record(record, entry.record_ae, ups)
            record_path = self._write_output(ups, record, outcome, journaled.path)
        entry.phase = Phase.DELIVERED
        self.journal.save_claim(entry)
        self.checkpoint("record_journaled", ups)
        if completed:
            self._progress(entry, 100.0, None, END_DESCRIPTION)
        result_outcome = self._finish_entry(entry, item.label, session=outcome)
        result_outcome.record_path = record_path
        return result_outcome

    def _interruption(self, outcome: SessionOutcome, token: StopToken) -> tuple[str, Code]:
        result = outcome.result
        status = str(result.termination_status) if result is not None else "UNKNOWN"
        term_code = result.termination_code if result is not None else ""
        delivered = ""
        if result is not None:
            parts = [
                f"beam {u.number} {u.delivered_meterset:.2f}/{u.specified_meterset:.2f} {u.meterset_unit}"
                for u in result.units
            ]
            delivered = "; delivered " + ", ".join(parts) if parts else ""
        if token.requested and self._cancel is not None:
            code = self._cancel.reason_code or msg.REASON_UNSPECIFIED
            return f"{token.reason} (termination {status}){delivered}", code
        if token.requested:
            return (
                f"{token.reason or 'stopped by the device'} (termination {status}){delivered}",
                msg.REASON_UNSPECIFIED,
            )
        code = msg.REASON_EQUIPMENT_FAILURE if status == "MACHINE" else msg.REASON_UNSPECIFIED
        suffix = f" code {term_code}" if term_code else ""
        return f"delivery interrupted: termination {status}{suffix}{delivered}", code

    def _report_units(self, entry: ClaimEntry, result) -> None:
        """Progress per beam from the result, when the deliverer reported none while running."""
        total = sum(u.specified_meterset for u in result.units) or 0.0
        done = 0.0
        for index, unit in enumerate(result.units):
            if not unit.delivered:
                continue
            done += unit.delivered_meterset
            percent = 100.0 * done / total if total > 0 else 0.0
            self._progress(
                entry, percent, unit.number, f"beam {unit.number} ({index + 1} of {len(result.units)})"
            )

    def _write_output(
        self, ups: str, record: Dataset, outcome: SessionOutcome, journaled: Path | None = None
    ) -> Path | None:
        """The record (a copy of the journal's file: the same bytes, not encoded again) and summary."""
        folder = self.config.out_dir / ups
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"RTRECORD_{record.SOPInstanceUID}.dcm"
            if journaled is not None:
                shutil.copyfile(journaled, path)
            else:
                record.save_as(path, enforce_file_format=True)
            if outcome.summary is not None:
                (folder / "summary.json").write_text(json.dumps(outcome.summary, indent=1, default=str))
            return path
        except OSError as exc:
            LOG.error("UPS %s: cannot write the record to %s: %s (it stays in the journal)", ups, folder, exc)
            return None

    def _decide(self, entry: ClaimEntry, state: str, reason: str, code: Code | None) -> None:
        entry.final_state = state
        entry.reason_text = reason
        entry.reason_code = msg.code_to_dict(code)
        if not entry.performed_end:
            entry.performed_end = msg.dicom_dt(self.now())
        if not entry.performed_start:
            entry.performed_start = entry.performed_end
        if entry.phase in (Phase.CLAIMING, Phase.CLAIMED, Phase.DELIVERING):
            entry.phase = Phase.DELIVERED
        self.journal.save_claim(entry)
        if reason:
            LOG.warning("UPS %s: will end %s: %s", entry.ups_uid, state, reason)

    # -- RO-62 -------------------------------------------------------------------------------------
    def _progress(self, entry: ClaimEntry, percent: float, beam: int | None, description: str) -> None:
        """RO-62 from the workflow's thread, after the delivery's reports still on their way."""
        self._settle_progress()
        if self._send_progress(entry, percent, beam, description):
            entry.progress_percent = percent
            if beam is not None:
                entry.beam_in_progress = beam

    def _send_progress(self, entry: ClaimEntry, percent: float, beam: int | None, description: str) -> bool:
        """One RO-62 N-SET; False if it did not reach the TMS (logged: progress is informational)."""
        what = f"RO-62 progress {percent:.0f} % for UPS {entry.ups_uid}"
        try:
            status = self._client(self.config.tms, retry=False).n_set(
                msg.progress_update(entry.transaction_uid, percent, beam, description), entry.ups_uid, what
            )
        except NetworkError as exc:
            LOG.warning("%s", exc)
            return False
        if status != codes.SUCCESS:
            LOG.warning("%s: status 0x%04X", what, status)
        else:
            beam_text = f" (beam {beam} in progress)" if beam is not None else ""
            LOG.info("%s%s", what, beam_text)
        return True

    def _settle_progress(self) -> None:
        """Wait until the last delivery's progress reporter has sent what it had queued (RO-62 stays
        before RO-63 .. RO-65); meanwhile the workflow journaled and wrote the record."""
        reporter, self._reporter = self._reporter, None
        if reporter is not None:
            reporter.join()

    # -- RO-63 .. RO-65 ----------------------------------------------------------------------------
    def _store_record(self, pending: PendingRecord) -> bool:
        """RO-63 C-STORE of a journaled record; True once acknowledged (then it leaves the journal)."""
        what = f"RO-63 store record {pending.sop_instance_uid} (UPS {pending.ups_uid or '?'})"
        try:
            peer = self.config.peer(pending.destination_ae)
            ds = self.journal.read_record(pending)
            status = self._client(peer).store(ds, what)
        except (DeviceConfigError, *NetworkError) as exc:
            LOG.error("%s: %s; kept in %s and sent again later", what, exc, pending.path.parent)
            return False
        if status not in STORE_OK:
            LOG.error(
                "%s: %s answered 0x%04X; kept in %s and sent again later",
                what,
                peer,
                status,
                pending.path.parent,
            )
            return False
        self.journal.remove_record(pending.sop_instance_uid)
        LOG.info("%s: stored at %s", what, peer)
        return True

    def _finish_entry(
        self,
        entry: ClaimEntry,
        label: str = "",
        refused: Sequence[str] = (),
        session: SessionOutcome | None = None,
        recovered: bool = False,
    ) -> WorkitemOutcome:
        """Store the record (if any), then RO-64 final N-SET and RO-65 N-ACTION."""
        self._settle_progress()
        ups = entry.ups_uid
        outcome = WorkitemOutcome(
            ups,
            OutcomeState.PENDING,
            entry.transaction_uid,
            label,
            entry.reason_text,
            list(refused),
            entry.record_uid,
            None,
            recovered,
            session,
        )
        if entry.record_uid and not entry.record_stored:
            pending = [p for p in self.journal.pending_records() if p.sop_instance_uid == entry.record_uid]
            if pending and not self._store_record(pending[0]):
                outcome.reason = (entry.reason_text + "; " if entry.reason_text else "") + (
                    f"record {entry.record_uid} not yet stored at {entry.record_ae}: UPS stays IN PROGRESS "
                    "until it is"
                )
                return outcome
            entry.record_stored = True
            self.journal.save_claim(entry)
            self.checkpoint("record_stored", ups)
        entry.phase = Phase.FINISHING
        self.journal.save_claim(entry)
        self.checkpoint("before_final", ups)
        try:
            state = self._send_final(entry)
        except NetworkError as exc:
            LOG.error("%s", exc)
            outcome.reason = f"{entry.reason_text + '; ' if entry.reason_text else ''}{exc}"
            return outcome
        outcome.state = state
        if state == OutcomeState.FAILED:
            outcome.reason = self._final_failure
        self.journal.remove_claim(ups)
        return outcome

    def _send_final(self, entry: ClaimEntry) -> str:
        ups = entry.ups_uid
        state = entry.final_state or codes.STATE_CANCELED
        output = None
        if entry.record_uid:
            output = msg.OutputReference(
                entry.record_class_uid,
                entry.record_uid,
                entry.record_study_uid,
                entry.record_series_uid,
                entry.record_ae,
            )
        cancellation = None
        if state == codes.STATE_CANCELED:
            cancellation = msg.Cancellation(
                self.now(),
                entry.reason_text or "canceled by the device",
                msg.code_from_dict(entry.reason_code) or msg.REASON_UNSPECIFIED,
            )
        progress = 100.0 if state == codes.STATE_COMPLETED else entry.progress_percent
        final = msg.final_update(
            entry.transaction_uid,
            progress_percent=progress,
            station_code=msg.code_from_dict(entry.station_code),
            workitem_code=msg.code_from_dict(entry.workitem_code),
            performed_start=entry.performed_start,
            performed_end=entry.performed_end,
            output=output,
            cancellation=cancellation,
            performer_name=self.config.operator_name,
            radiation_delivered=output is not None,
            # as the last RO-62 said: the progress information is unchanged, no Progress report follows
            progress_description=END_DESCRIPTION if state == codes.STATE_COMPLETED else "",
        )
        tms = self._tms
        what = f"RO-64 final update of UPS {ups}"
        status = tms.n_set(final, ups, what)
        if status in (codes.FAILURE_NOT_UPDATABLE, codes.FAILURE_WRONG_TRANSACTION_UID):
            self._final_failure = (
                f"{what}: {self.config.tms} answered 0x{status:04X}: this device no longer controls it"
            )
            LOG.error("%s", self._final_failure)
            return OutcomeState.FAILED
        if status != codes.SUCCESS:
            LOG.warning("%s: status 0x%04X", what, status)
        else:
            LOG.info("%s: done (output: %s)", what, "the record" if output is not None else "none")
        what = f"RO-65 {state} UPS {ups}"
        status, _ = tms.n_action(
            msg.state_change(state, entry.transaction_uid), codes.ACTION_CHANGE_STATE, ups, what
        )
        if status in (codes.SUCCESS, codes.WARNING_ALREADY_CANCELED, codes.WARNING_ALREADY_COMPLETED):
            LOG.info("%s: done", what)
            return state
        self._final_failure = f"{what}: {self.config.tms} answered 0x{status:04X}"
        LOG.error("%s", self._final_failure)
        return OutcomeState.FAILED

    # -- recovery ----------------------------------------------------------------------------------
    def recover(self) -> list[WorkitemOutcome]:
        """Re-send journaled records, then finish every journaled claim."""
        assert self.journal is not None
        claimed_records = {c.record_uid for c in self.journal.claims() if c.record_uid}
        for pending in self.journal.pending_records():
            if pending.sop_instance_uid not in claimed_records:
                self._store_record(pending)  # an orphan record (its workitem already ended): just send it
        outcomes = []
        for entry in self.journal.claims():
            outcomes.append(self._recover_claim(entry))
        return outcomes

    def _recover_claim(self, entry: ClaimEntry) -> WorkitemOutcome:
        ups = entry.ups_uid
        if entry.phase == Phase.CLAIMING:
            try:
                settled = self._settle_uncertain_claim(entry)
            except NetworkError as exc:
                LOG.error("%s", exc)
                return WorkitemOutcome(
                    ups, OutcomeState.PENDING, entry.transaction_uid, reason=str(exc), recovered=True
                )
            if settled is not None:
                return settled
        if not entry.final_state:
            beam = f", beam {entry.beam_in_progress} in progress" if entry.beam_in_progress else ""
            reason = (
                f"device restarted after an interruption ({entry.phase}{beam}, last reported progress "
                f"{entry.progress_percent:.0f} %); no treatment record was written for this session"
            )
            LOG.warning("UPS %s: %s", ups, reason)
            self._decide(entry, codes.STATE_CANCELED, reason, msg.REASON_EQUIPMENT_FAILURE)
        else:
            LOG.info("UPS %s: finishing from the journal (%s)", ups, entry.final_state)
        return self._finish_entry(entry, recovered=True)

    def _settle_uncertain_claim(self, entry: ClaimEntry) -> WorkitemOutcome | None:
        """A claim whose N-ACTION got no answer: did it take effect? (None: yes, finish it)."""
        ups = entry.ups_uid
        what = f"recovery: UPS {ups} claimed with Transaction UID {entry.transaction_uid}?"
        status, _ = self._tms.n_action(
            msg.state_change(codes.STATE_CANCELED, entry.transaction_uid),
            codes.ACTION_CHANGE_STATE,
            ups,
            what,
        )
        if status in (
            codes.FAILURE_NOT_YET_IN_PROGRESS,
            codes.FAILURE_WRONG_TRANSACTION_UID,
            codes.FAILURE_NO_SUCH_UPS,
            codes.FAILURE_NOT_UPDATABLE,
            codes.FAILURE_ALREADY_COMPLETED,
        ):
            LOG.info("%s no (0x%04X): the claim never took effect; journal entry dropped", what, status)
            self.journal.remove_claim(ups)
            return WorkitemOutcome(
                ups,
                OutcomeState.NOT_CLAIMED,
                entry.transaction_uid,
                reason=f"claim never took effect (0x{status:04X})",
                recovered=True,
            )
        if status == codes.SUCCESS:  # a lenient TMS canceled it without final-state attributes
            self.journal.remove_claim(ups)
            return WorkitemOutcome(
                ups,
                OutcomeState.CANCELED,
                entry.transaction_uid,
                reason="claimed before a restart; canceled",
                recovered=True,
            )
        return None


_RECORD_CLASSES = (
    codes.RT_BEAMS_TREATMENT_RECORD_STORAGE,
    codes.RT_BRACHY_TREATMENT_RECORD_STORAGE,
    codes.RT_ION_BEAMS_TREATMENT_RECORD_STORAGE,
)


class _Refusal(Exception):  # noqa: N818 (a value as much as an error)
    """The workitem cannot be delivered: CANCELED with this reason, nothing delivered."""

    def __init__(self, reason: str, code: Code) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _ProgressReporter:
    """Receives progress on the simulation thread; sends RO-62 N-SETs from its own thread.

    A report goes out when a beam starts (with its number) or progress advanced ``progress_step_percent``
    since the last one, never for the end of the last beam: the device reports 100 % itself.
    """

    def __init__(self, device: Device, entry: ClaimEntry) -> None:
        self.device = device
        self.entry = entry
        self.queue: queue.Queue[tuple[float, int, str] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"progress-{entry.ups_uid}", daemon=True)
        self.last_beam: int | None = None
        self.last_sent_percent = 0.0
        self.last_percent = 0.0
        self.calls = 0
        self.step = max(device.config.progress_step_percent, 0.0)
        self.lock = threading.Lock()
        self.closed = False

    def start(self) -> None:
        self.thread.start()

    def on_progress(self, progress: DeliveryProgress) -> None:
        """Never raises: the simulation must not be hurt by a subscriber."""
        try:
            self.calls += 1
            percent = 100.0 * progress.fraction_done
            self.last_percent = percent
            new_beam = progress.beam_number != self.last_beam
            stepped = self.step > 0 and percent - self.last_sent_percent >= self.step
            # the end (100 %) is reported by the device once the record is kept, not by the last beam
            ending = percent >= 100.0 and not new_beam
            if (new_beam or stepped) and not ending:
                self.last_beam = progress.beam_number
                self.last_sent_percent = percent
                description = (
                    f"beam {progress.beam_number} ({progress.beam_index + 1} of {progress.beam_count})"
                )
                self.queue.put((percent, progress.beam_number, description))
        except Exception as exc:
            LOG.error("progress callback failed: %s", exc)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            percent, beam, description = item
            self.device._send_progress(self.entry, percent, beam, description)
            with self.lock:
                if self.closed:  # the workflow's thread owns the entry and the journal again
                    continue
                self.entry.progress_percent = percent
                self.entry.beam_in_progress = beam
                with contextlib.suppress(RtsimError):
                    self.device.journal.save_claim(self.entry)

    def close(self) -> None:
        """No more reports; those queued still go out, but no longer touch the entry or the journal."""
        with self.lock:
            self.closed = True
        self.queue.put(None)

    def join(self) -> None:
        self.thread.join()

    def drain(self) -> None:
        """No more reports; those queued go out and are journaled, then the thread ends."""
        self.queue.put(None)
        self.thread.join()


class _ShutdownWatch:
    """Stops the beam (OPERATOR) if the device is asked to shut down during a delivery."""

    def __init__(self, stop_event: threading.Event | None, token: StopToken) -> None:
        self.stop_event = stop_event
        self.token = token
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="shutdown-watch")

    def start(self) -> None:
        if self.stop_event is not None:
            self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.stop_event.wait(0.1):
                self.token.request("OPERATOR", TERMINATION_CODE_SHUTDOWN, "device shut down during delivery")
                return

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()


def run_device(
    config: DeviceConfig,
    once: bool,
    stop_event: threading.Event | None = None,
    *,
    deliver: Deliver | None = None,
    parse_beam_tasks: BeamTaskParser | None = None,
) -> list[WorkitemOutcome]:
    """Start the device, poll the TMS and deliver until ``stop_event`` (or one pass if ``once``).

    Raises :class:`TmsUnavailableError` in ``once`` mode when the worklist cannot be queried.
    """
    stop_event = stop_event or threading.Event()
    with Device(config, deliver=deliver, parse_beam_tasks=parse_beam_tasks, sleep=stop_event.wait) as device:
        return device.run(stop_event, once=once)
