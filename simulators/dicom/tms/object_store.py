"""The object store behind the OST and the TMS: DICOM files plus a SQLite index, Study Root queries.

Files live in ``<data_dir>/objects/<study uid>/<sop instance uid>.dcm`` as received (the Part 10
bytes of the C-STORE, written atomically); ``<data_dir>/objects.sqlite`` indexes them. Matching uses an
in-memory copy of each instance's top-level non-sequence attributes (loaded at start), so queries never
read the (possibly large) files; retrievals read the file. Thread-safe.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from simulators.dicom.tms.matching import build_response, match_dataset
from simulators.records.common import file_meta_for

LOG = logging.getLogger(__name__)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
# the unique key of each Study Root level (PS3.4 C.6.2)
UNIQUE_KEYS = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
_SKIP_MATCH = (0x00080052, 0x00080054)  # Query/Retrieve Level, Retrieve AE Title
_COMPUTED = {
    "NumberOfStudyRelatedSeries": 0x00201206,
    "NumberOfStudyRelatedInstances": 0x00201208,
    "NumberOfSeriesRelatedInstances": 0x00201209,
    "ModalitiesInStudy": 0x00080061,
    "SOPClassesInStudy": 0x00080062,
}


class QueryError(ValueError):
    """A Q/R identifier the store cannot answer (wrong level, missing unique key...)."""


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One stored instance: its UIDs and where its file is."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    path: Path
    transfer_syntax: str = ""  # of the stored file ("" if unknown)


def _header(ds: Dataset) -> Dataset:
    """The top-level, non-sequence, non-bulk attributes used for matching."""
    out = Dataset()
    for elem in ds:
        if elem.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN") or elem.tag.group in (0x0002, 0x7FE0):
            continue
        out.add(elem)
    return out


class ObjectStore:
    """Persistent DICOM instance store with Study Root C-FIND matching."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self._dir = self.data_dir / "objects"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.data_dir / "objects.sqlite"), check_same_thread=False)
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS instances (
                sop_instance_uid TEXT PRIMARY KEY, sop_class_uid TEXT NOT NULL, study_uid TEXT NOT NULL,
                series_uid TEXT NOT NULL, patient_id TEXT, modality TEXT, path TEXT NOT NULL,
                received TEXT DEFAULT CURRENT_TIMESTAMP);
            """
        )
        self._headers: dict[str, Dataset] = {}
        self._instances: dict[str, StoredInstance] = {}
        self._load()

    def _load(self) -> None:
        with self._lock:
            rows = self._db.execute(
                "SELECT sop_instance_uid, sop_class_uid, study_uid, series_uid, path FROM instances"
            ).fetchall()
            for uid, class_uid, study, series, path_text in rows:
                path = Path(path_text)
                if not path.is_absolute():
                    path = self.data_dir / path
                try:
                    stored = dcmread(path, stop_before_pixels=True)
                    header = _header(stored)
                except Exception as error:  # keep serving the rest
                    LOG.error(
                        "stored object %s (%s) cannot be read: %s; dropped from the index", uid, path, error
                    )
                    self._db.execute("DELETE FROM instances WHERE sop_instance_uid = ?", (uid,))
                    continue
                self._headers[uid] = header
                self._instances[uid] = StoredInstance(
                    uid, class_uid, study, series, path, _transfer_syntax(stored)
                )
            self._db.commit()

    def close(self) -> None:
        """Close the index database."""
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._instances)

    def __contains__(self, uid: object) -> bool:
        with self._lock:
            return uid in self._instances

    # --- storing ----------------------------------------------------------------------------------
    def store_encoded(self, encoded: bytes, ds: Dataset) -> StoredInstance:
        """Keep a received instance: ``encoded`` are its Part 10 bytes, ``ds`` the decoded dataset."""
        path = self._path_for(ds)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(encoded)
        os.replace(tmp, path)
        return self._index(ds, path)

    def store_dataset(self, ds: Dataset) -> StoredInstance:
        """Keep an instance the TMS made itself (a BDI); adds file meta if it has none."""
        if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta = file_meta_for(ds)
        path = self._path_for(ds)
        tmp = path.with_suffix(".tmp")
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
        return self._index(ds, path)

    def _path_for(self, ds: Dataset) -> Path:
        """Where an instance's file goes: a folder per study, the file named by its SOP Instance UID."""
        study = str(ds.get("StudyInstanceUID", "") or "no-study")
        folder = self._dir / _safe(study)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{_safe(str(ds.SOPInstanceUID))}.dcm"

    def _index(self, ds: Dataset, path: Path) -> StoredInstance:
        uid = str(ds.SOPInstanceUID)
        instance = StoredInstance(
            uid,
            str(ds.SOPClassUID),
            str(ds.get("StudyInstanceUID", "") or ""),
            str(ds.get("SeriesInstanceUID", "") or ""),
            path,
            _transfer_syntax(ds),
        )
        try:
            stored_path = str(path.relative_to(self.data_dir))
        except ValueError:
            stored_path = str(path)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO instances (sop_instance_uid, sop_class_uid, study_uid, series_uid, "
                "patient_id, modality, path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    uid,
                    instance.sop_class_uid,
                    instance.study_uid,
                    instance.series_uid,
                    str(ds.get("PatientID", "") or ""),
                    str(ds.get("Modality", "") or ""),
                    stored_path,
                ),
            )
            self._db.commit()
            self._headers[uid] = _header(ds)
            self._instances[uid] = instance
        return instance

    # --- reading ----------------------------------------------------------------------------------
    def instance(self, uid: str) -> StoredInstance | None:
        """Where an instance is, or None."""
        with self._lock:
            return self._instances.get(uid)

    def read(self, uid: str) -> Dataset | None:
        """The full stored dataset (with file meta and its Transfer Syntax UID), or None."""
        instance = self.instance(uid)
        if instance is None:
            return None
        return dcmread(instance.path)

    def instances(self) -> list[StoredInstance]:
        """Every stored instance."""
        with self._lock:
            return list(self._instances.values())

    # --- Q/R --------------------------------------------------------------------------------------
    def _level(self, identifier: Dataset) -> str:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if level not in ("STUDY", "SERIES", "IMAGE"):
            raise QueryError(f"Query/Retrieve Level (0008,0052) {level!r}: expected STUDY, SERIES or IMAGE")
        return level

    def matching_instances(
        self, identifier: Dataset, *, require_unique_key: bool = False
    ) -> list[StoredInstance]:
        """Instances whose attributes match the identifier at its level (C-MOVE / C-GET selection)."""
        level = self._level(identifier)
        key = UNIQUE_KEYS[level]
        if require_unique_key and not str(identifier.get(key, "") or "").strip():
            raise QueryError(f"{key} is required at the {level} level for a retrieve")
        query = Dataset()
        for elem in identifier:
            if elem.keyword in _COMPUTED or elem.tag in _SKIP_MATCH:
                continue
            query.add(elem)
        with self._lock:
            found = [self._instances[uid] for uid, hdr in self._headers.items() if match_dataset(hdr, query)]
        return sorted(found, key=lambda i: (i.study_uid, i.series_uid, i.sop_instance_uid))

    def find(self, identifier: Dataset, retrieve_ae_title: str) -> Iterator[Dataset]:
        """Study Root C-FIND responses at the identifier's level (one per study/series/instance)."""
        level = self._level(identifier)
        key = UNIQUE_KEYS[level]
        matched = self.matching_instances(identifier)
        groups: dict[str, list[StoredInstance]] = {}
        for instance in matched:
            group_key = {
                "STUDY": instance.study_uid,
                "SERIES": instance.series_uid,
                "IMAGE": instance.sop_instance_uid,
            }[level]
            groups.setdefault(group_key, []).append(instance)
        for members in groups.values():
            with self._lock:
                header = self._headers[members[0].sop_instance_uid]
            record = Dataset()
            for elem in header:
                record.add(elem)
            self._add_computed(record, members[0], identifier)
            ask = Dataset()
            for elem in identifier:
                if elem.tag not in (0x00080052, 0x00080054):
                    ask.add(elem)
            response = build_response(record, ask)
            response.QueryRetrieveLevel = level
            response.RetrieveAETitle = retrieve_ae_title
            if key in record:
                response[key] = record[key]
            yield response

    def _add_computed(self, record: Dataset, member: StoredInstance, identifier: Dataset) -> None:
        asked = {elem.keyword for elem in identifier}
        with self._lock:
            study = [i for i in self._instances.values() if i.study_uid == member.study_uid]
            series = [i for i in study if i.series_uid == member.series_uid]
            modalities = sorted(
                {str(self._headers[i.sop_instance_uid].get("Modality", "")) for i in study} - {""}
            )
        if "NumberOfStudyRelatedSeries" in asked:
            record.NumberOfStudyRelatedSeries = len({i.series_uid for i in study})
        if "NumberOfStudyRelatedInstances" in asked:
            record.NumberOfStudyRelatedInstances = len(study)
        if "NumberOfSeriesRelatedInstances" in asked:
            record.NumberOfSeriesRelatedInstances = len(series)
        if "ModalitiesInStudy" in asked:
            record.ModalitiesInStudy = modalities
        if "SOPClassesInStudy" in asked:
            record.SOPClassesInStudy = sorted({i.sop_class_uid for i in study})

    def sop_classes(self, instances: Iterable[StoredInstance]) -> list[str]:
        """The distinct SOP classes among ``instances`` (for the C-MOVE sub-association contexts)."""
        return sorted({i.sop_class_uid for i in instances})


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""


def _safe(uid: str) -> str:
    """A file-name-safe form of a UID (UIDs are digits and dots; anything else is replaced)."""
    return "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in uid)[:128] or "_"
