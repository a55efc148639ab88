"""The device's UPS Event receiver: N-EVENT-REPORTs from the TMS it subscribed to (Watch).

Only a UPS Cancel Requested report (event type 2) changes what the device does; state and progress
reports are logged. The handler returns at once: the callback it calls must only set flags.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pynetdicom import evt

from simulators.dicom import codes
from simulators.dicom.tdd.messages import CancelRequest, parse_cancel_request

LOG = logging.getLogger(__name__)


def make_event_handler(on_cancel_requested: Callable[[CancelRequest], None]):
    """An ``evt.EVT_N_EVENT_REPORT`` handler that forwards Cancel Requested reports."""

    def on_event_report(event: evt.Event):
        request = event.request
        ups_uid = str(request.AffectedSOPInstanceUID or "")
        event_type = int(request.EventTypeID or 0)
        try:
            info = event.event_information
        except Exception as exc:
            LOG.error("N-EVENT-REPORT for UPS %s: cannot decode the event information: %s", ups_uid, exc)
            info = None
        if event_type == codes.EVENT_CANCEL_REQUESTED:
            cancel = parse_cancel_request(ups_uid, info)
            LOG.warning(
                "UPS %s: cancel requested by %s (%s)",
                ups_uid,
                cancel.requesting_ae or "?",
                cancel.reason_text or "no reason given",
            )
            try:
                on_cancel_requested(cancel)
            except Exception as exc:  # never let a subscriber error break the association
                LOG.error("UPS %s: cancel-request callback failed: %s", ups_uid, exc)
        elif event_type == codes.EVENT_STATE_REPORT and info is not None:
            LOG.info("UPS %s: state report %s", ups_uid, info.get("ProcedureStepState", "?"))
        else:
            LOG.debug("UPS %s: event report type %d ignored", ups_uid, event_type)
        return 0x0000, None

    return on_event_report
