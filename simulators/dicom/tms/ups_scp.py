"""pynetdicom handlers of the UPS SCP: N-CREATE (Push), C-FIND (Pull/Watch/Query), N-GET, N-SET, N-ACTION.

The handlers translate DIMSE requests into :class:`~simulators.dicom.tms.ups_store.UpsStore` calls,
queue the resulting N-EVENT-REPORTs and answer with a status dataset whose Error Comment names the
attribute at fault. N-GET, N-SET and N-ACTION must carry the UPS **Push** SOP Class UID as Requested SOP
Class (they arrive on a Pull/Watch/Push context); with ``strict_sop_class`` another class gets 0x0119
(Class-Instance Conflict). A malformed request gets a failure status and the server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from pydicom.dataset import Dataset

from simulators.dicom import codes
from simulators.dicom.tms.config import TmsConfig
from simulators.dicom.tms.events import EventSender
from simulators.dicom.tms.matching import MatchKeyError
from simulators.dicom.tms.ups_store import Outcome, UpsStore

LOG = logging.getLogger(__name__)

UPS_CLASSES = (
    codes.UPS_PUSH_SOP_CLASS,
    codes.UPS_PULL_SOP_CLASS,
    codes.UPS_WATCH_SOP_CLASS,
    codes.UPS_EVENT_SOP_CLASS,
    codes.UPS_QUERY_SOP_CLASS,
)
_GLOBAL_INSTANCES = (codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE, codes.UPS_FILTERED_GLOBAL_SUBSCRIPTION_INSTANCE)
_SUBSCRIPTION_KEYS = ("ReceivingAE", "DeletionLock")


def status_dataset(status: int, comment: str = "", tags: tuple[int, ...] = ()) -> Dataset:
    """A DIMSE status with an Error Comment (LO, cut to 64 characters) and the offending tags."""
    ds = Dataset()
    ds.Status = status
    if comment and status != codes.SUCCESS:
        ds.ErrorComment = comment[:64]
    if tags:
        ds.AttributeIdentifierList = list(tags)
    return ds


def _calling_ae(event) -> str:
    try:
        return str(event.assoc.requestor.ae_title).strip()
    except AttributeError:
        return ""


def _encoding(event) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of the request's presentation context; None if unknown or deflated
    (the responses are then encoded by pynetdicom from scratch)."""
    try:
        syntax = event.context.transfer_syntax
        if syntax.is_deflated:
            return None
        return bool(syntax.is_implicit_VR), bool(syntax.is_little_endian)
    except (AttributeError, TypeError, ValueError):
        return None


class UpsScp:
    """The UPS handlers, bound to one store, one event sender and the site configuration."""

    def __init__(
        self,
        store: UpsStore,
        config: TmsConfig,
        sender: EventSender,
        after_final: Callable[[str, str], Outcome | None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.sender = sender
        self._after_final = after_final

    def _answer(self, operation: str, uid: str, outcome: Outcome, calling_ae: str) -> Dataset:
        level = logging.INFO if outcome.ok else logging.WARNING
        LOG.log(
            level, "%s UPS %s from %s: 0x%04X %s", operation, uid, calling_ae, outcome.status, outcome.comment
        )
        self.sender.submit(outcome.events)
        with_tags = operation in ("N-SET", "N-ACTION")
        return status_dataset(outcome.status, outcome.comment, outcome.attribute_tags if with_tags else ())

    def _class_problem(self, class_uid: str) -> Dataset | None:
        if class_uid == codes.UPS_PUSH_SOP_CLASS:
            return None
        if class_uid in UPS_CLASSES and not self.config.strict_sop_class:
            return None
        if class_uid in UPS_CLASSES:
            return status_dataset(
                codes.FAILURE_CLASS_INSTANCE_CONFLICT,
                "Requested SOP Class must be UPS Push 1.2.840.10008.5.1.4.34.6.1",
            )
        return status_dataset(
            codes.FAILURE_SOP_CLASS_NOT_SUPPORTED, f"SOP Class {class_uid} is not a UPS class"
        )

    # --- N-CREATE ---------------------------------------------------------------------------------
    def on_n_create(self, event) -> tuple[Dataset, Dataset | None]:
        calling = _calling_ae(event)
        class_uid = str(event.request.AffectedSOPClassUID or "")
        if class_uid != codes.UPS_PUSH_SOP_CLASS:
            LOG.warning("N-CREATE from %s with SOP Class %s refused", calling, class_uid)
            return status_dataset(
                codes.FAILURE_SOP_CLASS_NOT_SUPPORTED, "N-CREATE needs the UPS Push SOP Class"
            ), None
        try:
            attributes = event.attribute_list
        except Exception as error:
            LOG.warning("N-CREATE from %s: attribute list cannot be decoded: %s", calling, error)
            return status_dataset(codes.FAILURE_PROCESSING_FAILURE, "attribute list cannot be decoded"), None
        requested_uid = event.request.AffectedSOPInstanceUID
        outcome = self.store.create(attributes, uid=str(requested_uid) if requested_uid else None)
        uid = str(outcome.dataset.SOPInstanceUID) if outcome.dataset is not None else str(requested_uid or "")
        status = self._answer("N-CREATE", uid, outcome, calling)
        if not outcome.ok:
            return status, None
        reply = outcome.dataset
        if not requested_uid and reply is not None:
            reply.AffectedSOPInstanceUID = uid
        return status, reply

    # --- C-FIND -----------------------------------------------------------------------------------
    def on_c_find(self, event) -> Iterator[tuple[Dataset | int, Dataset | None]]:
        calling = _calling_ae(event)
        try:
            identifier = event.identifier
        except Exception as error:
            LOG.warning("UPS C-FIND from %s: identifier cannot be decoded: %s", calling, error)
            yield status_dataset(codes.FAILURE_UNABLE_TO_PROCESS, "identifier cannot be decoded"), None
            return
        if "QueryRetrieveLevel" in identifier:
            yield (
                status_dataset(codes.FAILURE_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "UPS C-FIND has no levels"),
                None,
            )
            return
        try:
            responses = self.store.find(identifier, _encoding(event))
        except MatchKeyError as error:
            LOG.warning("UPS C-FIND from %s refused: %s", calling, error)
            yield status_dataset(codes.FAILURE_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(error)), None
            return
        LOG.info("UPS C-FIND from %s: %d match(es)", calling, len(responses))
        for response in responses:
            if event.is_cancelled:
                yield codes.CANCEL, None
                return
            yield codes.PENDING, response

    # --- N-GET ------------------------------------------------------------------------------------
    def on_n_get(self, event) -> tuple[Dataset, Dataset | None]:
        calling = _calling_ae(event)
        problem = self._class_problem(str(event.request.RequestedSOPClassUID or ""))
        if problem is not None:
            return problem, None
        uid = str(event.request.RequestedSOPInstanceUID or "")
        tags = [int(t) for t in (event.attribute_identifiers or [])]
        outcome = self.store.get_attributes(uid, tags)
        status = self._answer("N-GET", uid, outcome, calling)
        return status, outcome.dataset if outcome.ok else None

    # --- N-SET ------------------------------------------------------------------------------------
    def on_n_set(self, event) -> tuple[Dataset, Dataset | None]:
        calling = _calling_ae(event)
        problem = self._class_problem(str(event.request.RequestedSOPClassUID or ""))
        if problem is not None:
            return problem, None
        uid = str(event.request.RequestedSOPInstanceUID or "")
        try:
            modifications = event.modification_list
        except Exception as error:
            LOG.warning("N-SET from %s: modification list cannot be decoded: %s", calling, error)
            return status_dataset(
                codes.FAILURE_PROCESSING_FAILURE, "modification list cannot be decoded"
            ), None
        if modifications is None:
            return status_dataset(
                codes.FAILURE_INVALID_ATTRIBUTE_VALUE, "N-SET without modification list"
            ), None
        outcome = self.store.set(uid, modifications)
        return self._answer("N-SET", uid, outcome, calling), None

    # --- N-ACTION ---------------------------------------------------------------------------------
    def on_n_action(self, event) -> tuple[Dataset, Dataset | None]:
        calling = _calling_ae(event)
        problem = self._class_problem(str(event.request.RequestedSOPClassUID or ""))
        if problem is not None:
            return problem, None
        uid = str(event.request.RequestedSOPInstanceUID or "")
        action = event.request.ActionTypeID
        try:
            info = event.action_information
        except Exception as error:
            LOG.warning("N-ACTION from %s: action information cannot be decoded: %s", calling, error)
            return status_dataset(
                codes.FAILURE_PROCESSING_FAILURE, "action information cannot be decoded"
            ), None
        info = info if info is not None else Dataset()
        if action == codes.ACTION_CHANGE_STATE:
            return self._change_state(uid, info, calling)
        if action == codes.ACTION_REQUEST_CANCEL:
            return self._request_cancel(uid, info, calling)
        if action in (
            codes.ACTION_SUBSCRIBE,
            codes.ACTION_UNSUBSCRIBE,
            codes.ACTION_SUSPEND_GLOBAL_SUBSCRIPTION,
        ):
            return self._subscription(action, uid, info, calling)
        LOG.warning("N-ACTION type %s on %s from %s: no such action", action, uid, calling)
        return status_dataset(
            codes.FAILURE_NO_SUCH_ACTION, f"Action Type ID {action} is not a UPS action"
        ), None

    def _change_state(self, uid: str, info: Dataset, calling: str) -> tuple[Dataset, Dataset | None]:
        if uid in _GLOBAL_INSTANCES:
            return status_dataset(
                codes.FAILURE_ACTION_NOT_APPROPRIATE, "cannot change state of the global instance"
            ), None
        requested = str(info.get("ProcedureStepState", "") or "").strip()
        if not requested:
            if uid not in self.store:
                return status_dataset(codes.FAILURE_NO_SUCH_UPS, f"no UPS {uid}"), None
            return (
                status_dataset(
                    codes.FAILURE_INVALID_ARGUMENT_VALUE,
                    "Procedure Step State (0074,1000) missing",
                    (0x00741000,),
                ),
                None,
            )
        tuid = str(info.get("TransactionUID", "") or "").strip()
        outcome = self.store.change_state(uid, requested, tuid, calling_ae=calling)
        status = self._answer(f"N-ACTION change state to {requested}", uid, outcome, calling)
        if (
            outcome.status == codes.SUCCESS
            and requested in codes.FINAL_STATES
            and self._after_final is not None
        ):
            try:
                follow_up = self._after_final(uid, requested)
            except Exception:  # scheduling a follow-up must not fail the performer's request
                LOG.exception("follow-up scheduling after UPS %s %s failed", uid, requested)
                follow_up = None
            if follow_up is not None:
                self.sender.submit(follow_up.events)
        return status, outcome.dataset if outcome.ok else None

    def _request_cancel(self, uid: str, info: Dataset, calling: str) -> tuple[Dataset, Dataset | None]:
        state_before = ""
        current = self.store.get(uid)
        if current is not None:
            state_before = str(current.get("ProcedureStepState", ""))
        outcome = self.store.request_cancel(uid, info, requesting_ae=calling)
        if outcome.status == codes.SUCCESS and state_before == codes.STATE_IN_PROGRESS:
            reachable = [
                ae
                for event in outcome.events
                if event.event_type == codes.EVENT_CANCEL_REQUESTED
                for ae in event.recipients
                if self.config.peer(ae) is not None
            ]
            if not reachable:
                outcome = Outcome(
                    codes.FAILURE_PERFORMER_CANNOT_BE_CONTACTED,
                    "performer and subscribers are not in the AE table",
                )
        status = self._answer("N-ACTION request cancel", uid, outcome, calling)
        if (
            outcome.status == codes.SUCCESS
            and state_before == codes.STATE_SCHEDULED
            and self._after_final is not None
        ):
            try:
                follow_up = self._after_final(uid, codes.STATE_CANCELED)
            except Exception:
                LOG.exception("follow-up scheduling after canceling UPS %s failed", uid)
                follow_up = None
            if follow_up is not None:
                self.sender.submit(follow_up.events)
        return status, None

    def _subscription(
        self, action: int, uid: str, info: Dataset, calling: str
    ) -> tuple[Dataset, Dataset | None]:
        receiving = str(info.get("ReceivingAE", "") or "").strip()
        if not receiving:
            return status_dataset(
                codes.FAILURE_INVALID_ARGUMENT_VALUE, "Receiving AE (0074,1234) missing"
            ), None
        if action == codes.ACTION_SUBSCRIBE:
            if self.config.peer(receiving) is None:
                outcome = Outcome(
                    codes.FAILURE_RECEIVING_AE_UNKNOWN, f"Receiving AE {receiving} not in AE table"
                )
                return self._answer("N-ACTION subscribe", uid, outcome, calling), None
            lock_text = str(info.get("DeletionLock", "") or "").strip().upper()
            if lock_text not in ("TRUE", "FALSE"):
                return (
                    status_dataset(
                        codes.FAILURE_INVALID_ARGUMENT_VALUE, "Deletion Lock (0074,1230) not TRUE/FALSE"
                    ),
                    None,
                )
            filter_keys = None
            if uid == codes.UPS_FILTERED_GLOBAL_SUBSCRIPTION_INSTANCE:
                filter_keys = Dataset()
                for elem in info:
                    if elem.keyword not in _SUBSCRIPTION_KEYS:
                        filter_keys.add(elem)
            outcome = self.store.subscribe(uid, receiving, lock_text == "TRUE", filter_keys)
            return self._answer("N-ACTION subscribe", uid, outcome, calling), None
        if action == codes.ACTION_UNSUBSCRIBE:
            outcome = self.store.unsubscribe(uid, receiving)
            return self._answer("N-ACTION unsubscribe", uid, outcome, calling), None
        outcome = self.store.suspend_global(uid, receiving)
        return self._answer("N-ACTION suspend global subscription", uid, outcome, calling), None
