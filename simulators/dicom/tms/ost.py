"""pynetdicom handlers of the Object Storage (OST) and of the TMS's own storage: C-STORE, Study Root
C-FIND (STUDY/SERIES/IMAGE), C-MOVE (destination from the AE table) and C-GET.

Datasets sent out are read back from their files, so they carry ``file_meta.TransferSyntaxUID`` (a
sub-operation without it fails in pynetdicom 3). The C-MOVE sub-association of a plan, delivery
instruction or record in an uncompressed little endian syntax is kept for the next C-MOVE to the same
destination (:class:`MoveSourceAE`); any other proposes exactly the storage classes being moved, each
with the file's transfer syntax plus Explicit/Implicit VR Little Endian, and is released after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt

from simulators.dicom import codes
from simulators.dicom.assoc_pool import AssociationPool
from simulators.dicom.tms.config import TmsConfig
from simulators.dicom.tms.matching import MatchKeyError
from simulators.dicom.tms.netutil import no_delay_association
from simulators.dicom.tms.object_store import ObjectStore, QueryError, StoredInstance
from simulators.dicom.tms.ups_scp import status_dataset

LOG = logging.getLogger(__name__)

#: Classes a C-MOVE sub-association kept for reuse carries (what devices retrieve: plans, delivery
#: instructions, earlier records), each in both syntaxes; an instance in another syntax (compressed,
#: big endian) gets an association of its own, as before.
KEPT_MOVE_CLASSES = (
    codes.RT_PLAN_STORAGE,
    codes.RT_ION_PLAN_STORAGE,
    codes.RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE,
    codes.RT_BRACHY_DELIVERY_INSTRUCTION_STORAGE,
    codes.RT_BEAMS_TREATMENT_RECORD_STORAGE,
    codes.RT_BRACHY_TREATMENT_RECORD_STORAGE,
)
KEPT_MOVE_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: The keyword argument of :meth:`MoveSourceAE.associate` that asks for a kept association.
KEEP_KEYWORD = "rtsim_keep_for_moves"

# C-STORE failure statuses (PS3.4 B.2.3)
STORE_OUT_OF_RESOURCES = 0xA700
STORE_DATASET_DOES_NOT_MATCH = 0xA900
STORE_CANNOT_UNDERSTAND = 0xC000


def _calling_ae(event) -> str:
    try:
        return str(event.assoc.requestor.ae_title).strip()
    except AttributeError:
        return ""


def _called_ae(event) -> str:
    try:
        return str(event.assoc.acceptor.ae_title).strip()
    except AttributeError:
        return ""


class OstScp:
    """Storage and Study Root Q/R handlers over one :class:`ObjectStore`."""

    def __init__(self, store: ObjectStore, config: TmsConfig, tls_args: tuple | None = None) -> None:
        self.store = store
        self.config = config
        self.tls_args = tls_args

    # --- C-STORE ----------------------------------------------------------------------------------
    def on_c_store(self, event) -> Dataset:
        calling = _calling_ae(event)
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception as error:
            LOG.warning("C-STORE from %s: dataset cannot be decoded: %s", calling, error)
            return status_dataset(STORE_CANNOT_UNDERSTAND, "dataset cannot be decoded")
        affected_class = str(event.request.AffectedSOPClassUID or "")
        affected_uid = str(event.request.AffectedSOPInstanceUID or "")
        if "SOPInstanceUID" not in ds or not str(ds.SOPInstanceUID).strip():
            return status_dataset(STORE_DATASET_DOES_NOT_MATCH, "SOP Instance UID (0008,0018) missing")
        if "SOPClassUID" not in ds or str(ds.SOPClassUID) != affected_class:
            return status_dataset(
                STORE_DATASET_DOES_NOT_MATCH, "SOP Class UID (0008,0016) differs from request"
            )
        if str(ds.SOPInstanceUID) != affected_uid:
            return status_dataset(STORE_DATASET_DOES_NOT_MATCH, "SOP Instance UID differs from request")
        try:
            self.store.store_encoded(event.encoded_dataset(), ds)
        except OSError as error:
            LOG.error("C-STORE from %s: cannot write %s: %s", calling, affected_uid, error)
            return status_dataset(STORE_OUT_OF_RESOURCES, f"cannot write: {error.strerror or error}")
        LOG.info("C-STORE from %s to %s: %s %s", calling, _called_ae(event), affected_class, affected_uid)
        return status_dataset(codes.SUCCESS)

    # --- C-FIND -----------------------------------------------------------------------------------
    def on_c_find(self, event) -> Iterator[tuple[Dataset | int, Dataset | None]]:
        calling = _calling_ae(event)
        try:
            identifier = event.identifier
        except Exception as error:
            LOG.warning("C-FIND from %s: identifier cannot be decoded: %s", calling, error)
            yield status_dataset(codes.FAILURE_UNABLE_TO_PROCESS, "identifier cannot be decoded"), None
            return
        try:
            responses = list(self.store.find(identifier, _called_ae(event) or self.config.ost_title))
        except (QueryError, MatchKeyError) as error:
            LOG.warning("C-FIND from %s refused: %s", calling, error)
            yield status_dataset(codes.FAILURE_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(error)), None
            return
        LOG.info("Study Root C-FIND from %s: %d match(es)", calling, len(responses))
        for response in responses:
            if event.is_cancelled:
                yield codes.CANCEL, None
                return
            yield codes.PENDING, response

    # --- C-MOVE / C-GET ---------------------------------------------------------------------------
    def _select(self, event) -> tuple[list[StoredInstance], Dataset | None]:
        try:
            identifier = event.identifier
            return self.store.matching_instances(identifier, require_unique_key=True), None
        except (QueryError, MatchKeyError) as error:
            return [], status_dataset(codes.FAILURE_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(error))
        except Exception as error:
            return [], status_dataset(
                codes.FAILURE_UNABLE_TO_PROCESS, f"identifier cannot be decoded: {error}"
            )

    def _contexts(self, instances: list[StoredInstance]) -> tuple[list, list | None]:
        """The sub-association's presentation contexts and, when a kept association may carry them
        (every instance of a class a device retrieves, in Explicit or Implicit VR Little Endian), the
        (class, [syntax]) pairs it must have accepted (else None)."""
        by_class: dict[str, list[str]] = {}
        for instance in instances:
            syntaxes = by_class.setdefault(instance.sop_class_uid, [])
            ts = instance.transfer_syntax or _stored_syntax(instance)
            if ts not in syntaxes:
                syntaxes.append(ts)
        if by_class and all(
            uid in KEPT_MOVE_CLASSES and set(syntaxes) <= set(KEPT_MOVE_SYNTAXES)
            for uid, syntaxes in by_class.items()
        ):
            needed = [(uid, [ts]) for uid, syntaxes in by_class.items() for ts in syntaxes]
            return kept_move_contexts(), needed
        contexts = []
        for class_uid, syntaxes in sorted(by_class.items()):
            for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
                if ts not in syntaxes:
                    syntaxes.append(ts)
            contexts.append(build_context(class_uid, syntaxes))
        return contexts[:128], None

    def _send(self, event, instances: list[StoredInstance], operation: str):
        for instance in instances:
            if event.is_cancelled:
                LOG.info("%s canceled by the requestor", operation)
                yield codes.CANCEL, None
                return
            ds = self.store.read(instance.sop_instance_uid)
            if ds is None:
                yield (
                    status_dataset(codes.FAILURE_UNABLE_TO_PROCESS, f"{instance.sop_instance_uid} vanished"),
                    None,
                )
                return
            yield codes.PENDING, ds

    def on_c_move(self, event):
        calling = _calling_ae(event)
        destination = event.move_destination
        destination = (
            destination.decode("ascii", "replace") if isinstance(destination, bytes) else str(destination)
        )
        destination = destination.strip()
        peer = self.config.peer(destination)
        if peer is None:
            LOG.warning("C-MOVE from %s: destination %r is not in the AE table", calling, destination)
            yield None, None
            return
        instances, problem = self._select(event)
        contexts, needed = self._contexts(instances)
        # a refused identifier still needs one context: pynetdicom associates before the first status
        kwargs: dict = {
            "contexts": contexts or [build_context(codes.RT_PLAN_STORAGE)],
            # the sub-association sends C-STORE command and data set as two writes: without TCP_NODELAY
            # each waits ~40 ms for the destination's delayed ACK
            "evt_handlers": [(evt.EVT_CONN_OPEN, _no_delay_on_open)],
        }
        if needed is not None:
            kwargs[KEEP_KEYWORD] = needed
        if self.tls_args is not None:
            kwargs["tls_args"] = self.tls_args
        yield peer.host, peer.port, kwargs
        if problem is not None:
            LOG.warning("C-MOVE from %s refused: %s", calling, problem.get("ErrorComment", ""))
            yield 1
            yield problem, None
            return
        LOG.info("C-MOVE from %s to %s: %d instance(s)", calling, destination, len(instances))
        yield len(instances)
        yield from self._send(event, instances, "C-MOVE")

    def on_c_get(self, event):
        calling = _calling_ae(event)
        instances, problem = self._select(event)
        if problem is not None:
            LOG.warning("C-GET from %s refused: %s", calling, problem.get("ErrorComment", ""))
            yield 1
            yield problem, None
            return
        LOG.info("C-GET from %s: %d instance(s)", calling, len(instances))
        yield len(instances)
        yield from self._send(event, instances, "C-GET")


def _stored_syntax(instance: StoredInstance) -> str:
    try:
        return str(dcmread(instance.path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    except Exception:
        return ExplicitVRLittleEndian


def kept_move_contexts() -> list:
    """What a C-MOVE sub-association that is kept for the next C-MOVE proposes: one context per class a
    device retrieves and per uncompressed little endian syntax, so that the next plan, delivery
    instruction or record finds its context accepted whatever it is."""
    return [build_context(uid, [ts]) for uid in KEPT_MOVE_CLASSES for ts in KEPT_MOVE_SYNTAXES]


class MoveSourceAE(AE):
    """The TMS's (and the OST's) AE: a C-MOVE sub-association outlives its C-MOVE when it can.

    pynetdicom's C-MOVE SCP opens the sub-association to the Move Destination through
    ``ae.associate(...)`` with the keyword arguments the handler yielded, and releases it after the
    last C-STORE, before the final C-MOVE response. When the handler adds ``KEEP_KEYWORD`` (the
    contexts its instances need), :meth:`associate` takes an idle association to the same destination
    from ``pool`` (or opens one) and lends it; its "release" gives it back, to be released for real
    after ``pool.max_idle_s`` without a C-MOVE. RO-59 (plan) and RO-61 (delivery instruction) come a
    few milliseconds apart: the second skips the association set-up and release (~11 ms). The
    sub-operations still go on an association of their own (PS3.4 C.4.2.3.1), one C-MOVE at a time.
    """

    def __init__(self, ae_title: str, pool: AssociationPool) -> None:
        super().__init__(ae_title=ae_title)
        self.move_pool = pool

    def associate(self, addr, port, *args, **kwargs):
        needed = kwargs.pop(KEEP_KEYWORD, None)
        if needed is None:
            return super().associate(addr, port, *args, **kwargs)
        key = (self.ae_title, str(kwargs.get("ae_title", "")), addr, port)
        assoc = self.move_pool.take(key, needed)
        if assoc is None:
            assoc = super().associate(addr, port, *args, **kwargs)
            if not assoc.is_established:
                return assoc
        return _LentAssociation(assoc, self.move_pool, key)


class _LentAssociation:
    """An association lent to one C-MOVE: ``release()`` returns it to the pool; the rest is the real one."""

    def __init__(self, assoc, pool: AssociationPool, key) -> None:
        self._assoc = assoc
        self._pool = pool
        self._key = key

    def release(self) -> None:
        self._pool.give_back(self._key, self._assoc)

    def __getattr__(self, name: str):
        return getattr(self._assoc, name)


def _no_delay_on_open(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler of the C-MOVE sub-association: TCP_NODELAY on its socket."""
    no_delay_association(event.assoc)
