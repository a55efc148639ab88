"""The embedded TMS as one object: ``TmsServer(config).start()`` -> bound port, ``.stop()``.

By default one AE (``TMS``) serves everything: UPS Push/Pull/Watch/Query (and UPS Event for the
N-EVENT-REPORTs it sends), storage, Study Root C-FIND/C-MOVE/C-GET and Verification. With
``[ost] ae_title`` different from the TMS's, the OST is a second AE on its own port serving storage and
Q/R only; both read and write the same object store, and each names itself as Retrieve AE Title.

Associations are accepted only from configured calling AE titles (A-ASSOCIATE-RJ "calling AE title not
recognised" otherwise), only when addressed to our AE title, only on the configured address, and with
TLS when configured.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom import AE, DEFAULT_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import (
    RTBeamsDeliveryInstructionStorage,
    RTBeamsTreatmentRecordStorage,
    RTBrachyApplicationSetupDeliveryInstructionsStorage,
    RTBrachyTreatmentRecordStorage,
    RTIonBeamsTreatmentRecordStorage,
    RTIonPlanStorage,
    RTPlanStorage,
    RTTreatmentSummaryRecordStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    UnifiedProcedureStepEvent,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepPush,
    UnifiedProcedureStepQuery,
    UnifiedProcedureStepWatch,
    Verification,
)

from simulators.dicom import codes
from simulators.dicom.assoc_pool import AssociationPool
from simulators.dicom.tms.config import TmsConfig, TmsConfigError
from simulators.dicom.tms.events import EventSender
from simulators.dicom.tms.netutil import no_delay
from simulators.dicom.tms.object_store import ObjectStore
from simulators.dicom.tms.ost import MoveSourceAE, OstScp
from simulators.dicom.tms.scheduler import ContinuationScheduler
from simulators.dicom.tms.ups_scp import UPS_CLASSES, UpsScp, status_dataset
from simulators.dicom.tms.ups_store import UpsEvent, UpsStore
from simulators.errors import RtsimError

LOG = logging.getLogger(__name__)

RT_STORAGE = (
    RTPlanStorage,
    RTIonPlanStorage,
    RTBeamsTreatmentRecordStorage,
    RTBrachyTreatmentRecordStorage,
    RTIonBeamsTreatmentRecordStorage,
    RTTreatmentSummaryRecordStorage,
    RTBeamsDeliveryInstructionStorage,
    RTBrachyApplicationSetupDeliveryInstructionsStorage,
)
UPS_CONTEXTS = (
    UnifiedProcedureStepPush,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepWatch,
    UnifiedProcedureStepQuery,
    UnifiedProcedureStepEvent,
)
# accepted for storage: the uncompressed ones (incl. the retired big endian some IHE-RO files use) and
# the common image compressions; fewer syntaxes keep association negotiation fast (~20 ms, not ~100)
STORAGE_TRANSFER_SYNTAXES = [
    *DEFAULT_TRANSFER_SYNTAXES,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
QR_CONTEXTS = (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)


def stop_server(server) -> None:
    """Shut a pynetdicom server down without waiting out its 0.5 s poll interval.

    The shutdown flag is raised first, then a throw-away connection wakes the accept loop, which then
    sees the flag at once. Active associations are aborted by pynetdicom's ``shutdown()``.
    """
    server._BaseServer__shutdown_request = True  # what socketserver.shutdown() sets before waiting
    try:
        host, port = server.server_address[:2]
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        pass
    server.shutdown()


class TmsStartError(RtsimError):
    """The TMS cannot start (address in use, bad TLS files...); the message says which."""


def server_ssl_context(config: TmsConfig) -> ssl.SSLContext | None:
    """The listeners' TLS context from ``[tms.tls]`` (None without TLS)."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=str(tls.ca_file))
    except (OSError, ssl.SSLError) as error:
        raise TmsConfigError(f"{config.source}: [tms.tls] cannot load certificate/key: {error}") from error
    if tls.require_client_cert:
        if tls.ca_file is None:
            raise TmsConfigError(f"{config.source}: [tms.tls] require_client_cert needs ca_file")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_tls_args(config: TmsConfig) -> tuple[ssl.SSLContext, str | None] | None:
    """TLS for the TMS's outbound associations (events, C-MOVE) when ``[tms.tls] outbound`` is set."""
    tls = config.tls
    if tls is None or not tls.outbound:
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
    )
    context.check_hostname = False
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context, None


# How long the TMS keeps an idle association it opened (C-MOVE sub-association, event reports) for the
# next use: long enough for a device's RO-59 -> RO-61 and its next fraction, short enough not to hold
# polling associations open between a device's worklist queries.
KEPT_ASSOCIATION_IDLE_S = 0.5


class TmsServer:
    """The embedded TMS: UPS SCP + OST + continuation scheduling, persistent in ``config.data_dir``."""

    def __init__(
        self,
        config: TmsConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        kept_association_idle_s: float = KEPT_ASSOCIATION_IDLE_S,
    ) -> None:
        self.config = config
        self._ssl_context = ssl_context
        self._kept_idle_s = kept_association_idle_s
        self.ups: UpsStore | None = None
        self.objects: ObjectStore | None = None
        self.sender: EventSender | None = None
        self._servers: list = []
        # C-MOVE sub-associations kept between a device's RO-59 and RO-61 (and its next fraction)
        self._move_pool = AssociationPool(max_idle_s=kept_association_idle_s)
        self.port = 0
        self.ost_port = 0

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> int:
        """Open the stores, start listening (non-blocking) and return the TMS's bound port."""
        if self._servers:
            return self.port
        config = self.config
        # pynetdicom pretty-prints every C-FIND request and response identifier line by line even when
        # its logger discards the lines (milliseconds per worklist item): only when they would be shown
        shown = logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)
        _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = shown
        if config.restrict_calling_ae and not config.calling_aes():
            raise TmsConfigError(
                f"{config.source}: restrict_calling_ae is on but no AE title is allowed "
                "(add allowed_ae_titles or [[peers]])"
            )
        data_dir = Path(config.data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TmsStartError(f"TMS data_dir {data_dir}: {error.strerror or error}") from error
        ssl_context = self._ssl_context or server_ssl_context(config)
        outbound_tls = client_tls_args(config)
        self.ups = UpsStore(data_dir, require_transaction_uid=config.require_transaction_uid)
        self.objects = ObjectStore(data_dir)
        self.sender = EventSender(
            config.ae_title,
            config.peer,
            timeout_s=config.network_timeout_s,
            tls_args=outbound_tls,
            idle_release_s=self._kept_idle_s,
        )
        self.sender.start()
        continuation = ContinuationScheduler(self.ups, self.objects, config)
        ups_scp = UpsScp(self.ups, config, self.sender, after_final=continuation.after_final)
        ost_scp = OstScp(self.objects, config, tls_args=outbound_tls)

        def on_c_find(event):
            if str(event.request.AffectedSOPClassUID) in UPS_CLASSES:
                yield from ups_scp.on_c_find(event)
            else:
                yield from ost_scp.on_c_find(event)

        def on_n_event_report(event):  # we are the Event SCP; nobody should send us reports
            return status_dataset(
                codes.FAILURE_NO_SUCH_ACTION, "this TMS does not receive event reports"
            ), None

        tms_handlers = [
            (evt.EVT_C_ECHO, lambda event: codes.SUCCESS),
            (evt.EVT_C_STORE, ost_scp.on_c_store),
            (evt.EVT_C_FIND, on_c_find),
            (evt.EVT_C_MOVE, ost_scp.on_c_move),
            (evt.EVT_C_GET, ost_scp.on_c_get),
            (evt.EVT_N_CREATE, ups_scp.on_n_create),
            (evt.EVT_N_GET, ups_scp.on_n_get),
            (evt.EVT_N_SET, ups_scp.on_n_set),
            (evt.EVT_N_ACTION, ups_scp.on_n_action),
            (evt.EVT_N_EVENT_REPORT, on_n_event_report),
        ]
        ost_handlers = [
            (evt.EVT_C_ECHO, lambda event: codes.SUCCESS),
            (evt.EVT_C_STORE, ost_scp.on_c_store),
            (evt.EVT_C_FIND, ost_scp.on_c_find),
            (evt.EVT_C_MOVE, ost_scp.on_c_move),
            (evt.EVT_C_GET, ost_scp.on_c_get),
        ]
        try:
            tms_ae = self._make_ae(config.ae_title, with_ups=True)
            server = tms_ae.start_server(
                (config.host, config.port), block=False, ssl_context=ssl_context, evt_handlers=tms_handlers
            )
            no_delay(server.socket)
            self._servers.append((tms_ae, server))
            self.port = int(server.server_address[1])
            if config.separate_ost:
                ost_ae = self._make_ae(config.ost_title, with_ups=False)
                ost_server = ost_ae.start_server(
                    (config.host, config.ost_port),
                    block=False,
                    ssl_context=ssl_context,
                    evt_handlers=ost_handlers,
                )
                no_delay(ost_server.socket)
                self._servers.append((ost_ae, ost_server))
                self.ost_port = int(ost_server.server_address[1])
            else:
                self.ost_port = self.port
        except OSError as error:
            self.stop()
            raise TmsStartError(
                f"TMS cannot listen on {config.host}:{config.port}: {error.strerror or error}"
            ) from error
        LOG.info(
            "TMS %s listening on %s:%d%s (OST %s on port %d), data in %s, %d workitem(s), %d object(s)",
            config.ae_title,
            config.host,
            self.port,
            " with TLS" if ssl_context else "",
            config.ost_title,
            self.ost_port,
            data_dir,
            len(self.ups),
            len(self.objects),
        )
        if self.ups.was_warm_start:
            self._announce_restart()
        return self.port

    def _make_ae(self, ae_title: str, *, with_ups: bool) -> AE:
        config = self.config
        ae = MoveSourceAE(ae_title, self._move_pool)
        ae.acse_timeout = config.network_timeout_s
        ae.dimse_timeout = config.network_timeout_s
        ae.network_timeout = config.network_timeout_s
        ae.maximum_associations = 20
        ae.require_called_aet = config.require_called_ae
        if config.restrict_calling_ae:
            ae.require_calling_aet = config.calling_aes()
        ae.add_supported_context(Verification)
        if with_ups:
            for uid in UPS_CONTEXTS:
                ae.add_supported_context(uid, scu_role=True, scp_role=True)
        for uid in QR_CONTEXTS:
            ae.add_supported_context(uid)
        storage = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts] + [
            str(u) for u in RT_STORAGE
        ]
        for uid in dict.fromkeys(storage):  # scp_role: C-GET requestors receive on this association
            ae.add_supported_context(uid, STORAGE_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        return ae

    def _announce_restart(self) -> None:
        """PS3.4 CC.2.4.3: tell every subscriber the SCP restarted with its lists preserved."""
        if self.ups is None or self.sender is None:
            return
        recipients = self.ups.all_subscribers()
        if not recipients:
            return
        info = Dataset()
        info.SCPStatus = codes.SCP_STATUS_RESTARTED
        info.SubscriptionListStatus = codes.LIST_STATUS_WARM_START
        info.UnifiedProcedureStepListStatus = codes.LIST_STATUS_WARM_START
        self.sender.submit(
            [
                UpsEvent(
                    codes.EVENT_SCP_STATUS_CHANGE, codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE, info, recipients
                )
            ]
        )

    def stop(self) -> None:
        """Stop listening, send what is queued, close the stores."""
        self._move_pool.close()  # released, before the AEs' shutdown would abort them
        for ae, server in self._servers:
            try:
                stop_server(server)
            finally:
                ae.shutdown()
        self._servers = []
        if self.sender is not None:
            self.sender.stop(self.config.network_timeout_s)
            self.sender = None
        if self.ups is not None:
            self.ups.close()
            self.ups = None
        if self.objects is not None:
            self.objects.close()
            self.objects = None

    def __enter__(self) -> TmsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
