"""The UPS worklist: workitems, their state machine, the Transaction UID lock and subscriptions.

Persistence: each workitem is a DICOM file ``<data_dir>/ups/<uid>.dcm`` (the content, including its
state and Transaction UID, written atomically); ``<data_dir>/ups.sqlite`` holds the index (state,
station, start, patient, performer AE) and the subscription lists. A restarted TMS therefore keeps its
worklist, states, locks and subscribers. Every public method takes one lock, so the pynetdicom handler
threads may call them concurrently.

Each operation returns an :class:`Outcome`: the DIMSE status, a short comment naming the attribute,
the reply dataset, and the N-EVENT-REPORTs to send (computed under the lock, sent by the caller).

State rules (PS3.4 CC.1.1, Table CC.1.1-2), checked in this order: unknown instance C307; request for
SCHEDULED C303; then by current state (SCHEDULED: IN PROGRESS needs a Transaction UID (C301),
COMPLETED/CANCELED C310; IN PROGRESS: a second claim C302, wrong or missing Transaction UID C301,
COMPLETED without the final-state attributes C304; COMPLETED: again B306, else C300; CANCELED: again
B304, else C300). The state-before-lock order is dcm4chee-arc's; the second claimant gets C302.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.charset import default_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from simulators.dicom import codes
from simulators.dicom.tms.matching import (
    MatchKeyError,
    build_response,
    match_dataset,
    pre_encoded,
    query_shape,
    single_value_key,
    strip_tags,
    validate_keys,
)

LOG = logging.getLogger(__name__)

TAG_TRANSACTION_UID = 0x00081195
TAG_PROCEDURE_STEP_STATE = 0x00741000
TAG_PROGRESS_SEQUENCE = 0x00741002
NEVER_RETURNED = (TAG_TRANSACTION_UID,)

# N-CREATE: Type 1 for the SCU (PS3.4 Table CC.2.5-3); absent -> 0x0120, empty -> 0x0121
_CREATE_TYPE1 = (
    ("ProcedureStepState", 0x00741000),
    ("ScheduledProcedureStepPriority", 0x00741200),
    ("ProcedureStepLabel", 0x00741204),
    ("ScheduledProcedureStepStartDateTime", 0x00404005),
    ("InputReadinessState", 0x00404041),
)
# N-CREATE: Type 2 attributes the SCP creates empty when the SCU leaves them out
_CREATE_TYPE2_SEQUENCES = (
    "ScheduledWorkitemCodeSequence",
    "InputInformationSequence",
    "ScheduledStationNameCodeSequence",
    "ScheduledProcessingParametersSequence",
    "ProcedureStepProgressInformationSequence",
    "UnifiedProcedureStepPerformedProcedureSequence",
)
_CREATE_TYPE2_VALUES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID")
# N-SET may never carry these (state changes go through N-ACTION)
_SET_FORBIDDEN = (
    ("SOPClassUID", 0x00080016),
    ("SOPInstanceUID", 0x00080018),
    ("ProcedureStepState", 0x00741000),
)
_PRIORITIES = ("HIGH", "MEDIUM", "LOW")
_READINESS = (codes.INPUT_READY, codes.INPUT_INCOMPLETE, codes.INPUT_UNAVAILABLE)


def now_dt() -> str:
    """The current local date and time as a DICOM DT value."""
    return datetime.now().strftime("%Y%m%d%H%M%S.%f")


@dataclass(frozen=True, slots=True)
class UpsEvent:
    """One N-EVENT-REPORT to send: event type, the UPS (or the global instance), information, to whom."""

    event_type: int
    sop_instance_uid: str
    info: Dataset
    recipients: tuple[str, ...]


@dataclass
class Outcome:
    """The result of one UPS operation."""

    status: int
    comment: str = ""
    dataset: Dataset | None = None
    events: list[UpsEvent] = field(default_factory=list)
    attribute_tags: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """Success or warning."""
        return self.status == codes.SUCCESS or (self.status & 0xF000) == 0xB000 or self.status == 0x0001


@dataclass(frozen=True, slots=True)
class WorkitemIndex:
    """The indexed facts about one workitem (what ``rtsim tms worklist`` shows without reading files)."""

    uid: str
    state: str
    station: str
    start: str
    patient_id: str
    label: str
    performer_ae: str


def _fail(status: int, comment: str, *tags: int) -> Outcome:
    return Outcome(status=status, comment=comment, attribute_tags=tuple(tags))


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _first_code_value(ds: Dataset, keyword: str) -> str:
    seq = ds.get(keyword)
    if seq and len(seq) and "CodeValue" in seq[0]:
        return str(seq[0].CodeValue)
    return ""


def _revision(ds: Dataset) -> Dataset:
    """The next version of a stored workitem, to be changed: it holds the same element objects, so a
    change must replace an element (``add_new``, ``ds[tag] = ...``), never alter one in place (the
    previous version, the encoded-bytes cache and sent reports share them), and must keep the
    character set (elements still raw are decoded with the new version's)."""
    out = Dataset()
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset yields converted elements, not tags)
        out[tag] = ds.get_item(tag)
    return out


def _encoded_element(elem, encoding) -> bytes:
    """One top-level element as pydicom writes it in Explicit VR Little Endian."""
    single = Dataset()
    single[elem.tag] = elem
    fp = DicomBytesIO()
    fp.is_implicit_VR = False
    fp.is_little_endian = True
    write_dataset(fp, single, parent_encoding=encoding)
    return fp.getvalue()


def _progress_item(ds: Dataset) -> Dataset:
    """The (single) Procedure Step Progress Information item, created if absent."""
    if "ProcedureStepProgressInformationSequence" not in ds or not len(
        ds.ProcedureStepProgressInformationSequence
    ):
        ds.ProcedureStepProgressInformationSequence = Sequence([Dataset()])
    return ds.ProcedureStepProgressInformationSequence[0]


def state_report_info(ds: Dataset) -> Dataset:
    """Event Information of a UPS State Report (event 1)."""
    info = Dataset()
    info.ProcedureStepState = _text(ds, "ProcedureStepState")
    info.InputReadinessState = _text(ds, "InputReadinessState") or codes.INPUT_READY
    if info.ProcedureStepState == codes.STATE_CANCELED:
        progress = ds.get("ProcedureStepProgressInformationSequence")
        if progress and len(progress):
            item = progress[0]
            if "ReasonForCancellation" in item:
                info.ReasonForCancellation = item.ReasonForCancellation
            if "ProcedureStepDiscontinuationReasonCodeSequence" in item:
                info.ProcedureStepDiscontinuationReasonCodeSequence = (
                    item.ProcedureStepDiscontinuationReasonCodeSequence
                )
    return info


def assigned_info(ds: Dataset) -> Dataset:
    """Event Information of a UPS Assigned report (event 5)."""
    info = Dataset()
    info.ScheduledStationNameCodeSequence = ds.get("ScheduledStationNameCodeSequence", Sequence())
    info.ScheduledHumanPerformersSequence = ds.get("ScheduledHumanPerformersSequence", Sequence())
    return info


def final_state_problem(ds: Dataset, target: str) -> str | None:
    """Why ``ds`` may not become ``target`` (PS3.4 Table CC.2.5-3 final-state codes), or None.

    COMPLETED needs a Unified Procedure Step Performed Procedure Sequence item with Performed Procedure
    Step Start and End DateTime, a Performed Station Name Code Sequence item and an Output Information
    Sequence (which may be empty). CANCELED needs nothing the SCP cannot fill in itself.
    """
    if target != codes.STATE_COMPLETED:
        return None
    performed = ds.get("UnifiedProcedureStepPerformedProcedureSequence")
    if not performed or not len(performed):
        return "no Performed Procedure Sequence (0074,1216) item"
    item = performed[0]
    for keyword, tag in (
        ("PerformedProcedureStepStartDateTime", "(0040,4050)"),
        ("PerformedProcedureStepEndDateTime", "(0040,4051)"),
    ):
        if not _text(item, keyword):
            return f"{keyword} {tag} empty"
    station = item.get("PerformedStationNameCodeSequence")
    if not station or not len(station) or not _text(station[0], "CodeValue"):
        return "no Performed Station Name Code (0040,4028)"
    if "OutputInformationSequence" not in item:
        return "no Output Information Sequence (0040,4033)"
    return None


class UpsStore:
    """Thread-safe, persistent UPS worklist with the PS3.4 Annex CC state machine."""

    def __init__(self, data_dir: str | Path, *, require_transaction_uid: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.require_transaction_uid = require_transaction_uid
        self._dir = self.data_dir / "ups"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.data_dir / "ups.sqlite"), check_same_thread=False)
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS workitems (
                uid TEXT PRIMARY KEY, state TEXT NOT NULL, transaction_uid TEXT, performer_ae TEXT,
                station TEXT, start TEXT, patient_id TEXT, label TEXT, updated TEXT);
            CREATE TABLE IF NOT EXISTS subscriptions (
                ae TEXT NOT NULL, uid TEXT NOT NULL, deletion_lock INTEGER NOT NULL,
                PRIMARY KEY (ae, uid));
            CREATE TABLE IF NOT EXISTS global_subscriptions (
                ae TEXT NOT NULL, instance TEXT NOT NULL, deletion_lock INTEGER NOT NULL,
                filter_json TEXT, PRIMARY KEY (ae, instance));
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            """
        )
        self._items: dict[str, Dataset] = {}
        self._facts: dict[str, tuple[str, str]] = {}  # uid -> (state, scheduled start), for find()
        self._responses: dict[str, dict[tuple, Dataset]] = {}  # uid -> C-FIND responses by query shape
        self._encoded: dict[str, tuple] = {}  # uid -> (character set, {tag: (element, its bytes)})
        self._headers: dict[str, bytes] = {}  # uid -> preamble and file meta of its file
        self.was_warm_start = False
        self._load()

    # --- persistence ----------------------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            known = {row[0]: row for row in self._db.execute("SELECT uid, performer_ae FROM workitems")}
            for path in sorted(self._dir.glob("*.dcm")):
                try:
                    ds = dcmread(path)
                except Exception as error:  # a damaged file must not stop the TMS
                    LOG.error("UPS file %s cannot be read (%s); workitem skipped", path, error)
                    continue
                uid = str(ds.SOPInstanceUID)
                self._keep(uid, ds)
                performer = known[uid][1] if uid in known else ""
                self._index(ds, performer or "")
            for uid in set(known) - set(self._items):
                LOG.error("UPS %s is indexed but its file is missing; dropped from the index", uid)
                self._db.execute("DELETE FROM workitems WHERE uid = ?", (uid,))
            row = self._db.execute("SELECT value FROM meta WHERE key = 'starts'").fetchone()
            starts = int(row[0]) if row else 0
            self.was_warm_start = starts > 0
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('starts', ?)", (str(starts + 1),))
            self._db.commit()

    def _index(self, ds: Dataset, performer_ae: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO workitems VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(ds.SOPInstanceUID),
                _text(ds, "ProcedureStepState"),
                _text(ds, "TransactionUID"),
                performer_ae,
                _first_code_value(ds, "ScheduledStationNameCodeSequence"),
                _text(ds, "ScheduledProcedureStepStartDateTime"),
                _text(ds, "PatientID"),
                _text(ds, "ProcedureStepLabel"),
                now_dt(),
            ),
        )

    def _save(self, ds: Dataset, performer_ae: str | None = None) -> None:
        """Write the workitem file atomically, then its index row (call with the lock held)."""
        uid = str(ds.SOPInstanceUID)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = codes.UPS_PUSH_SOP_CLASS
        meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        path = self._dir / f"{uid}.dcm"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self._encoded_file(uid, ds))
        os.replace(tmp, path)
        if performer_ae is None:
            row = self._db.execute("SELECT performer_ae FROM workitems WHERE uid = ?", (uid,)).fetchone()
            performer_ae = row[0] if row and row[0] else ""
        self._index(ds, performer_ae)
        self._db.commit()
        self._keep(uid, ds)

    def _encoded_file(self, uid: str, ds: Dataset) -> bytes:
        """The Part 10 bytes of a workitem (Explicit VR Little Endian), each top-level element encoded by
        pydicom once and its bytes kept while the element object stays the same: a new version of a
        workitem (:func:`_revision`) shares the unchanged elements with the previous one, so an N-SET
        or N-ACTION encodes only what it changed (pydicom's writer costs ~20 us per element and the
        whole workitem was ~1.4 ms of every state change and progress update)."""
        charset = ds.get("SpecificCharacterSet")
        charset_key = tuple(charset) if isinstance(charset, MultiValue | list) else charset
        known_charset, known = self._encoded.get(uid, (None, {}))
        if known_charset != charset_key:
            known = {}
        encoding = charset if charset is not None else default_encoding
        chunks: dict[BaseTag, tuple[object, bytes]] = {}
        for tag in sorted(ds.keys()):
            if tag.element == 0 and tag.group > 6:  # retired group lengths are not written
                continue
            elem = ds.get_item(tag)
            kept = known.get(tag)
            if kept is not None and kept[0] is elem:
                chunks[tag] = kept
            else:
                elem = ds[tag]  # a raw one (read from the file) decoded with the workitem's character set
                chunks[tag] = (elem, _encoded_element(elem, encoding))
        self._encoded[uid] = (charset_key, chunks)
        header = self._headers.get(uid)
        if header is None:  # preamble and file meta: the same for every version of the workitem
            fp = DicomBytesIO()
            fp.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
            header = self._headers[uid] = fp.getvalue()
        return header + b"".join(chunk for _, chunk in chunks.values())

    def _keep(self, uid: str, ds: Dataset) -> None:
        """The workitem's current content in memory (call with the lock held); cached responses go."""
        self._items[uid] = ds
        state = _text(ds, "ProcedureStepState")
        self._facts[uid] = (state, _text(ds, "ScheduledProcedureStepStartDateTime"))
        self._responses.pop(uid, None)
        if state in codes.FINAL_STATES:  # never written again
            self._encoded.pop(uid, None)
            self._headers.pop(uid, None)

    def close(self) -> None:
        """Close the index database."""
        with self._lock:
            self._db.close()

    # --- reading ----------------------------------------------------------------------------------
    def __contains__(self, uid: object) -> bool:
        with self._lock:
            return uid in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, uid: str) -> Dataset | None:
        """A copy of the workitem without its Transaction UID, or None."""
        with self._lock:
            ds = self._items.get(uid)
            return strip_tags(ds, NEVER_RETURNED) if ds is not None else None

    def transaction_uid(self, uid: str) -> str:
        """The lock of an IN PROGRESS workitem ('' if none); for the TMS itself, never sent out."""
        with self._lock:
            ds = self._items.get(uid)
            return _text(ds, "TransactionUID") if ds is not None else ""

    def performer_ae(self, uid: str) -> str:
        """The calling AE title that claimed the workitem ('' if never claimed)."""
        with self._lock:
            row = self._db.execute("SELECT performer_ae FROM workitems WHERE uid = ?", (uid,)).fetchone()
            return row[0] if row and row[0] else ""

    def index(self) -> list[WorkitemIndex]:
        """Every workitem's indexed facts, by scheduled start."""
        with self._lock:
            rows = self._db.execute(
                "SELECT uid, state, station, start, patient_id, label, performer_ae FROM workitems "
                "ORDER BY start, uid"
            ).fetchall()
        return [WorkitemIndex(*[r or "" for r in row]) for row in rows]

    def find(self, identifier: Dataset, encoding: tuple[bool, bool] | None = None) -> list[Dataset]:
        """C-FIND: the response identifiers of every matching workitem (never the Transaction UID).

        With ``encoding`` (implicit VR, little endian: the transfer syntax of the C-FIND's presentation
        context) each response comes pre-encoded, as a dataset of raw elements that pydicom writes out
        as they are, and is kept until its workitem changes: devices repeat the same query all day, and
        building and encoding a response cost ~1.5 ms per workitem, the larger part of a worklist query.
        A single-valued Procedure Step State key is matched first, from memory.

        Raises :class:`MatchKeyError` for a key that cannot be matched (the SCP answers 0xA900).
        """
        query = strip_tags(identifier, NEVER_RETURNED)
        validate_keys(query)
        state = single_value_key(query, 0x00741000)
        shape = (query_shape(query), encoding)
        with self._lock:
            responses = []
            for uid in sorted(self._items, key=lambda u: (self._facts[u][1], u)):
                if state is not None and self._facts[uid][0] != state:
                    continue
                ds = self._items[uid]
                if not match_dataset(ds, query, skip=NEVER_RETURNED):
                    continue
                cached = self._responses.setdefault(uid, {})
                response = cached.get(shape)
                if response is None:
                    response = cached[shape] = self._response(ds, query, encoding)
                responses.append(response)
            return responses

    @staticmethod
    def _response(ds: Dataset, query: Dataset, encoding: tuple[bool, bool] | None) -> Dataset:
        response = build_response(ds, query, never_return=NEVER_RETURNED)
        response.SOPClassUID = codes.UPS_PUSH_SOP_CLASS
        response.SOPInstanceUID = ds.SOPInstanceUID
        if "SpecificCharacterSet" in ds:
            response.SpecificCharacterSet = ds.SpecificCharacterSet
        return response if encoding is None else pre_encoded(response, *encoding)

    def get_attributes(self, uid: str, tags: Iterable[int]) -> Outcome:
        """N-GET: the requested attributes (all if none are named), never the Transaction UID."""
        with self._lock:
            ds = self._items.get(uid)
            if ds is None:
                return _fail(codes.FAILURE_NO_SUCH_UPS, f"no UPS {uid}"[:64])
            full = strip_tags(ds, NEVER_RETURNED)
            full.file_meta = FileMetaDataset()
            wanted = [int(t) for t in tags]
            if not wanted:
                reply = Dataset()
                for elem in full:
                    reply.add(elem)
                return Outcome(codes.SUCCESS, dataset=reply)
            reply = Dataset()
            for tag in wanted:
                if tag == TAG_TRANSACTION_UID:
                    continue
                if tag in full:
                    reply.add(full[tag])
            return Outcome(codes.SUCCESS, dataset=reply)

    # --- subscriptions ----------------------------------------------------------------------------
    def subscribers(self, uid: str) -> tuple[str, ...]:
        """AE titles subscribed to this workitem."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ae FROM subscriptions WHERE uid = ? ORDER BY ae", (uid,)
            ).fetchall()
        return tuple(r[0] for r in rows)

    def global_subscribers(self) -> tuple[str, ...]:
        """AE titles with a (filtered) global subscription."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT ae FROM global_subscriptions ORDER BY ae").fetchall()
        return tuple(r[0] for r in rows)

    def all_subscribers(self) -> tuple[str, ...]:
        """Every AE with any subscription (for SCP Status Change reports)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ae FROM subscriptions UNION SELECT ae FROM global_subscriptions ORDER BY 1"
            ).fetchall()
        return tuple(r[0] for r in rows)

    def _global_matches(self, ds: Dataset) -> list[tuple[str, int]]:
        rows = self._db.execute("SELECT ae, deletion_lock, filter_json FROM global_subscriptions").fetchall()
        out = []
        for ae, lock, filter_json in rows:
            if filter_json:
                try:
                    if not match_dataset(ds, Dataset.from_json(filter_json), skip=NEVER_RETURNED):
                        continue
                except MatchKeyError:
                    continue
            out.append((ae, lock))
        return out

    def subscribe(
        self, uid: str, receiving_ae: str, deletion_lock: bool, filter_keys: Dataset | None = None
    ) -> Outcome:
        """N-ACTION 3: subscribe to one UPS, to all (global) or to the matching ones (filtered global).

        Initial UPS State Reports: one for a specific UPS; one per workitem for a global subscription
        with deletion lock (PS3.4 CC.2.4.3); one per matching workitem for a filtered one with lock.
        """
        lock = 1 if deletion_lock else 0
        with self._lock:
            events: list[UpsEvent] = []
            if uid in (
                codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE,
                codes.UPS_FILTERED_GLOBAL_SUBSCRIPTION_INSTANCE,
            ):
                filtered = uid == codes.UPS_FILTERED_GLOBAL_SUBSCRIPTION_INSTANCE
                filter_json = filter_keys.to_json() if filtered and filter_keys is not None else None
                self._db.execute(
                    "INSERT OR REPLACE INTO global_subscriptions VALUES (?, ?, ?, ?)",
                    (receiving_ae, uid, lock, filter_json),
                )
                query = Dataset.from_json(filter_json) if filter_json else None
                for item_uid, ds in sorted(self._items.items()):
                    try:
                        if query is not None and not match_dataset(ds, query, skip=NEVER_RETURNED):
                            continue
                    except MatchKeyError as error:
                        self._db.rollback()
                        return _fail(codes.FAILURE_INVALID_ARGUMENT_VALUE, str(error)[:64])
                    self._db.execute(
                        "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)",
                        (receiving_ae, item_uid, lock),
                    )
                    if deletion_lock:
                        events.append(
                            UpsEvent(
                                codes.EVENT_STATE_REPORT, item_uid, state_report_info(ds), (receiving_ae,)
                            )
                        )
                self._db.commit()
                return Outcome(codes.SUCCESS, events=events)
            ds = self._items.get(uid)
            if ds is None:
                return _fail(codes.FAILURE_NO_SUCH_UPS, f"no UPS {uid}"[:64])
            self._db.execute(
                "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)", (receiving_ae, uid, lock)
            )
            self._db.commit()
            events.append(UpsEvent(codes.EVENT_STATE_REPORT, uid, state_report_info(ds), (receiving_ae,)))
            return Outcome(codes.SUCCESS, events=events)

    def unsubscribe(self, uid: str, receiving_ae: str) -> Outcome:
        """N-ACTION 4: from one UPS, or (global instances) from everything this AE subscribed to."""
        with self._lock:
            if uid in (
                codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE,
                codes.UPS_FILTERED_GLOBAL_SUBSCRIPTION_INSTANCE,
            ):
                self._db.execute("DELETE FROM global_subscriptions WHERE ae = ?", (receiving_ae,))
                self._db.execute("DELETE FROM subscriptions WHERE ae = ?", (receiving_ae,))
            else:
                if uid not in self._items:
                    return _fail(codes.FAILURE_NO_SUCH_UPS, f"no UPS {uid}"[:64])
                self._db.execute("DELETE FROM subscriptions WHERE ae = ? AND uid = ?", (receiving_ae, uid))
            self._db.commit()
            return Outcome(codes.SUCCESS)

    def suspend_global(self, uid: str, receiving_ae: str) -> Outcome:
        """N-ACTION 5: end the global subscription but keep the per-UPS ones it created."""
        if uid not in (
            codes.UPS_GLOBAL_SUBSCRIPTION_INSTANCE,
            codes.UPS_FILTERED_GLOBAL_SUBSCRIPTION_INSTANCE,
        ):
            return _fail(codes.FAILURE_ACTION_NOT_APPROPRIATE, "suspend applies to the global instance only")
        with self._lock:
            self._db.execute(
                "DELETE FROM global_subscriptions WHERE ae = ? AND instance = ?", (receiving_ae, uid)
            )
            self._db.commit()
        return Outcome(codes.SUCCESS)

    # --- N-CREATE ---------------------------------------------------------------------------------
    def create(self, attributes: Dataset, uid: str | None = None) -> Outcome:
        """N-CREATE (UPS Push): validate, store as SCHEDULED, report to global subscribers.

        The reply dataset holds the created instance; ``Outcome.dataset.SOPInstanceUID`` is its UID.
        """
        ds = strip_tags(attributes, ())
        uid = (uid or _text(ds, "SOPInstanceUID") or generate_uid()).strip()
        for keyword, tag in _CREATE_TYPE1:
            if keyword not in ds:
                return _fail(codes.FAILURE_MISSING_ATTRIBUTE, f"N-CREATE: {keyword} missing", tag)
            if not _text(ds, keyword):
                return _fail(codes.FAILURE_MISSING_ATTRIBUTE_VALUE, f"N-CREATE: {keyword} empty", tag)
        state = _text(ds, "ProcedureStepState")
        if state != codes.STATE_SCHEDULED:
            return _fail(
                codes.FAILURE_STATE_NOT_SCHEDULED_ON_CREATE, f"N-CREATE: state {state!r}, not SCHEDULED"
            )
        problems = []
        if _text(ds, "ScheduledProcedureStepPriority") not in _PRIORITIES:
            problems.append(("ScheduledProcedureStepPriority", 0x00741200))
        if _text(ds, "InputReadinessState") not in _READINESS:
            problems.append(("InputReadinessState", 0x00404041))
        try:
            match_dataset(ds, _dt_probe(_text(ds, "ScheduledProcedureStepStartDateTime")))
        except MatchKeyError:
            problems.append(("ScheduledProcedureStepStartDateTime", 0x00404005))
        if _text(ds, "TransactionUID"):
            problems.append(("TransactionUID", TAG_TRANSACTION_UID))
        if _text(ds, "SOPClassUID") and _text(ds, "SOPClassUID") != codes.UPS_PUSH_SOP_CLASS:
            problems.append(("SOPClassUID", 0x00080016))
        if _text(ds, "SOPInstanceUID") and _text(ds, "SOPInstanceUID") != uid:
            problems.append(("SOPInstanceUID", 0x00080018))
        if problems:
            names = ", ".join(name for name, _ in problems)
            return _fail(
                codes.FAILURE_INVALID_ATTRIBUTE_VALUE,
                f"N-CREATE: invalid {names}"[:64],
                *[t for _, t in problems],
            )
        status = codes.SUCCESS
        if "TransactionUID" in ds:
            del ds.TransactionUID
        if not _text(ds, "WorklistLabel"):
            ds.WorklistLabel = codes.DEFAULT_WORKLIST_LABEL
            status = codes.WARNING_UPS_CREATED_WITH_MODIFICATIONS
        for keyword in _CREATE_TYPE2_SEQUENCES:
            if keyword not in ds:
                setattr(ds, keyword, Sequence())
        for keyword in _CREATE_TYPE2_VALUES:
            if keyword not in ds:
                setattr(ds, keyword, "" if keyword != "StudyInstanceUID" else None)
        ds.SOPClassUID = codes.UPS_PUSH_SOP_CLASS
        ds.SOPInstanceUID = uid
        with self._lock:
            if uid in self._items:
                return _fail(codes.FAILURE_DUPLICATE_SOP_INSTANCE, f"UPS {uid} already exists"[:64])
            self._save(ds, performer_ae="")
            events = []
            for ae, lock in self._global_matches(ds):
                self._db.execute("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)", (ae, uid, lock))
            self._db.commit()
            recipients = self.subscribers(uid)
            if recipients:
                events.append(UpsEvent(codes.EVENT_STATE_REPORT, uid, state_report_info(ds), recipients))
                if len(ds.get("ScheduledStationNameCodeSequence", [])) or len(
                    ds.get("ScheduledHumanPerformersSequence", [])
                ):
                    events.append(UpsEvent(codes.EVENT_ASSIGNED, uid, assigned_info(ds), recipients))
            reply = strip_tags(ds, NEVER_RETURNED)
            reply.file_meta = FileMetaDataset()
        return Outcome(status, dataset=reply, events=events)

    # --- N-SET ------------------------------------------------------------------------------------
    def set(self, uid: str, modifications: Dataset) -> Outcome:
        """N-SET: update a SCHEDULED (no lock needed) or IN PROGRESS (lock needed) workitem."""
        forbidden = [(k, t) for k, t in _SET_FORBIDDEN if k in modifications]
        with self._lock:
            ds = self._items.get(uid)
            if ds is None:
                return _fail(codes.FAILURE_NO_SUCH_UPS, f"no UPS {uid}"[:64])
            if forbidden:
                names = ", ".join(k for k, _ in forbidden)
                comment = f"N-SET may not change {names}"
                return _fail(codes.FAILURE_INVALID_ATTRIBUTE_VALUE, comment[:64], *[t for _, t in forbidden])
            state = _text(ds, "ProcedureStepState")
            if state in codes.FINAL_STATES:
                return _fail(codes.FAILURE_NOT_UPDATABLE, f"UPS is {state}; no more updates")
            given = _text(modifications, "TransactionUID")
            if state == codes.STATE_IN_PROGRESS:
                problem = self._lock_problem(ds, given)
                if problem:
                    return _fail(codes.FAILURE_WRONG_TRANSACTION_UID, problem, TAG_TRANSACTION_UID)
            before_progress = _progress_signature(ds)
            before_assigned = [
                _seq_json(ds.get("ScheduledStationNameCodeSequence")),
                _seq_json(ds.get("ScheduledHumanPerformersSequence")),
            ]
            before_ready = _text(ds, "InputReadinessState")
            if _text(modifications, "SpecificCharacterSet") in ("", _text(ds, "SpecificCharacterSet")):
                updated = _revision(ds)
            else:  # another character set: every text value decoded now, with the one it was stored in
                updated = strip_tags(ds, ())
            for elem in modifications:
                if elem.tag == TAG_TRANSACTION_UID or elem.tag.group in (0x0000, 0x0002):
                    continue
                updated[elem.tag] = elem
            self._save(updated)
            events = []
            recipients = self.subscribers(uid)
            if recipients:
                if _progress_signature(updated) != before_progress:
                    info = Dataset()
                    info.ProcedureStepProgressInformationSequence = updated.get(
                        "ProcedureStepProgressInformationSequence", Sequence()
                    )
                    events.append(UpsEvent(codes.EVENT_PROGRESS_REPORT, uid, info, recipients))
                after = [
                    _seq_json(updated.get("ScheduledStationNameCodeSequence")),
                    _seq_json(updated.get("ScheduledHumanPerformersSequence")),
                ]
                if after != before_assigned:
                    events.append(UpsEvent(codes.EVENT_ASSIGNED, uid, assigned_info(updated), recipients))
                if _text(updated, "InputReadinessState") != before_ready:
                    events.append(
                        UpsEvent(codes.EVENT_STATE_REPORT, uid, state_report_info(updated), recipients)
                    )
            return Outcome(codes.SUCCESS, events=events)

    def _lock_problem(self, ds: Dataset, given: str) -> str:
        stored = _text(ds, "TransactionUID")
        if not given:
            if not self.require_transaction_uid:
                return ""
            return "Transaction UID (0008,1195) missing for IN PROGRESS UPS"
        if given != stored:
            return "Transaction UID (0008,1195) does not match the lock"
        return ""

    # --- N-ACTION 1: change state -----------------------------------------------------------------
    def change_state(
        self, uid: str, requested: str, transaction_uid: str, *, calling_ae: str = ""
    ) -> Outcome:
        """N-ACTION Change UPS State (RO-60 claim, RO-65 completed/canceled)."""
        requested = requested.strip()
        transaction_uid = transaction_uid.strip()
        with self._lock:
            ds = self._items.get(uid)
            if ds is None:
                return _fail(codes.FAILURE_NO_SUCH_UPS, f"no UPS {uid}"[:64])
            if requested == codes.STATE_SCHEDULED:
                return _fail(
                    codes.FAILURE_MAY_ONLY_BECOME_SCHEDULED_VIA_CREATE, "only N-CREATE makes SCHEDULED"
                )
            if requested not in codes.UPS_STATES:
                return _fail(
                    codes.FAILURE_INVALID_ARGUMENT_VALUE,
                    f"Procedure Step State {requested!r} unknown"[:64],
                    0x00741000,
                )
            state = _text(ds, "ProcedureStepState")
            reply = Dataset()
            reply.ProcedureStepState = requested
            if state == codes.STATE_SCHEDULED:
                if requested != codes.STATE_IN_PROGRESS:
                    return _fail(
                        codes.FAILURE_NOT_YET_IN_PROGRESS, f"UPS is SCHEDULED; claim it before {requested}"
                    )
                if not transaction_uid:
                    return _fail(
                        codes.FAILURE_WRONG_TRANSACTION_UID, "claim needs a Transaction UID (0008,1195)"
                    )
                updated = _revision(ds)
                updated.add_new(TAG_PROCEDURE_STEP_STATE, "CS", codes.STATE_IN_PROGRESS)
                updated.add_new(TAG_TRANSACTION_UID, "UI", transaction_uid)
                self._save(updated, performer_ae=calling_ae.strip())
                return Outcome(codes.SUCCESS, dataset=reply, events=self._state_events(updated))
            if state == codes.STATE_IN_PROGRESS:
                if requested == codes.STATE_IN_PROGRESS:
                    return _fail(codes.FAILURE_ALREADY_IN_PROGRESS, "UPS is already IN PROGRESS (claimed)")
                problem = self._lock_problem(ds, transaction_uid)
                if problem:
                    return _fail(codes.FAILURE_WRONG_TRANSACTION_UID, problem, TAG_TRANSACTION_UID)
                problem = final_state_problem(ds, requested)
                if problem:
                    return _fail(codes.FAILURE_FINAL_STATE_REQUIREMENTS_NOT_MET, f"COMPLETED: {problem}"[:64])
                updated = _revision(ds)
                updated.add_new(TAG_PROCEDURE_STEP_STATE, "CS", requested)
                if requested == codes.STATE_CANCELED:
                    shared = updated.get("ProcedureStepProgressInformationSequence") or []
                    copies = Sequence([strip_tags(i, ()) for i in shared])  # to change, unlike the shared
                    updated.add_new(TAG_PROGRESS_SEQUENCE, "SQ", copies)
                    item = _progress_item(updated)
                    if not _text(item, "ProcedureStepCancellationDateTime"):
                        item.ProcedureStepCancellationDateTime = now_dt()
                self._save(updated)
                return Outcome(codes.SUCCESS, dataset=reply, events=self._state_events(updated))
            if state == codes.STATE_COMPLETED:
                if requested == codes.STATE_COMPLETED:
                    return Outcome(codes.WARNING_ALREADY_COMPLETED, "UPS already COMPLETED", dataset=reply)
                return _fail(codes.FAILURE_NOT_UPDATABLE, f"UPS is COMPLETED; cannot become {requested}")
            if requested == codes.STATE_CANCELED:
                return Outcome(codes.WARNING_ALREADY_CANCELED, "UPS already CANCELED", dataset=reply)
            return _fail(codes.FAILURE_NOT_UPDATABLE, f"UPS is CANCELED; cannot become {requested}")

    def _state_events(self, ds: Dataset) -> list[UpsEvent]:
        recipients = self.subscribers(str(ds.SOPInstanceUID))
        if not recipients:
            return []
        return [UpsEvent(codes.EVENT_STATE_REPORT, str(ds.SOPInstanceUID), state_report_info(ds), recipients)]

    # --- N-ACTION 2: request cancel ---------------------------------------------------------------
    def request_cancel(self, uid: str, info: Dataset, *, requesting_ae: str) -> Outcome:
        """N-ACTION Request UPS Cancel (PS3.4 CC.2.2).

        SCHEDULED: the TMS itself moves it to IN PROGRESS and then CANCELED (two state reports).
        IN PROGRESS: a UPS Cancel Requested event goes to the subscribers and to the performer's AE;
        the performer decides. COMPLETED: C311. CANCELED: B304.
        """
        with self._lock:
            ds = self._items.get(uid)
            if ds is None:
                return _fail(codes.FAILURE_NO_SUCH_UPS, f"no UPS {uid}"[:64])
            state = _text(ds, "ProcedureStepState")
            if state == codes.STATE_COMPLETED:
                return _fail(codes.FAILURE_ALREADY_COMPLETED, "UPS is already COMPLETED")
            if state == codes.STATE_CANCELED:
                return Outcome(codes.WARNING_ALREADY_CANCELED, "UPS is already CANCELED")
            event_info = Dataset()
            event_info.RequestingAE = requesting_ae.strip()
            for keyword in (
                "ReasonForCancellation",
                "ProcedureStepDiscontinuationReasonCodeSequence",
                "ContactURI",
                "ContactDisplayName",
            ):
                if keyword in info:
                    event_info[keyword] = info[keyword]
            recipients = self.subscribers(uid)
            events: list[UpsEvent] = []
            if state == codes.STATE_SCHEDULED:
                if recipients:
                    events.append(UpsEvent(codes.EVENT_CANCEL_REQUESTED, uid, event_info, recipients))
                claimed = strip_tags(ds, ())
                claimed.ProcedureStepState = codes.STATE_IN_PROGRESS
                claimed.TransactionUID = generate_uid()
                events.extend(self._state_events(claimed))
                canceled = strip_tags(claimed, ())
                canceled.ProcedureStepState = codes.STATE_CANCELED
                item = _progress_item(canceled)
                item.ProcedureStepCancellationDateTime = now_dt()
                for keyword in ("ReasonForCancellation", "ProcedureStepDiscontinuationReasonCodeSequence"):
                    if keyword in info:
                        item[keyword] = info[keyword]
                if "ReasonForCancellation" not in item:
                    item.ReasonForCancellation = (
                        f"canceled on request of {requesting_ae.strip() or 'unknown AE'}"
                    )
                self._save(canceled, performer_ae="")
                events.extend(self._state_events(canceled))
                return Outcome(codes.SUCCESS, events=events)
            performer = self.performer_ae(uid)
            targets = tuple(sorted(set(recipients) | ({performer} if performer else set())))
            events.append(UpsEvent(codes.EVENT_CANCEL_REQUESTED, uid, event_info, targets))
            return Outcome(codes.SUCCESS, events=events)


def _seq_json(seq: Sequence | None) -> str:
    if not seq:
        return "[]"
    return json.dumps([item.to_json_dict() for item in seq], sort_keys=True)


def _progress_signature(ds: Dataset) -> str:
    """What a UPS Progress Report is about: progress, its description and the communication URIs."""
    seq = ds.get("ProcedureStepProgressInformationSequence")
    if not seq or not len(seq):
        return ""
    item = seq[0]
    return json.dumps(
        [
            _text(item, "ProcedureStepProgress"),
            _text(item, "ProcedureStepProgressDescription"),
            _seq_json(item.get("ProcedureStepCommunicationsURISequence")),
        ]
    )


def _dt_probe(value: str) -> Dataset:
    """A one-key identifier used to validate a DT value with the matching parser."""
    probe = Dataset()
    probe.ScheduledProcedureStepStartDateTime = value
    return probe
