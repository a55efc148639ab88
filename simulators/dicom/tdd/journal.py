"""The device's on-disk journal: claimed workitems (with their Transaction UID) and unsent records.

Layout under the journal directory::

    claims/<UPS SOP Instance UID>.json     one claimed (or being claimed) workitem
    records/<record SOP Instance UID>.dcm  a treatment record not yet acknowledged by its destination
    records/<record SOP Instance UID>.json where it must go (AE title) and for which workitem

Every write goes to a temporary file that is flushed, fsynced and renamed over the target, so a crash
leaves either the old or the new content, never half a file. The claim is written *before* the claim
N-ACTION is sent (PS3.4 CC.2.1.2: keep the Transaction UID in non-volatile storage).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite

from simulators.errors import RtsimError

LOG = logging.getLogger(__name__)


class JournalError(RtsimError):
    """The journal directory cannot be read or written."""


class Phase:
    """Where a claimed workitem stands (string constants, stored in the JSON)."""

    CLAIMING = "claiming"  # journaled, N-ACTION IN PROGRESS sent or about to be sent
    CLAIMED = "claimed"  # the TMS accepted the claim
    DELIVERING = "delivering"  # beam may be on
    DELIVERED = "delivered"  # the session ended; outcome (and record, if any) journaled
    FINISHING = "finishing"  # record acknowledged (or none); final N-SET / N-ACTION under way


@dataclass
class ClaimEntry:
    """One workitem this device claimed. Enough to finish it after a restart."""

    ups_uid: str
    transaction_uid: str
    phase: str = Phase.CLAIMING
    tms_ae: str = ""
    station_code: dict[str, str] = field(default_factory=dict)  # value, scheme, meaning
    workitem_code: dict[str, str] = field(default_factory=dict)
    performed_start: str = ""  # DICOM DT
    performed_end: str = ""
    progress_percent: float = 0.0
    beam_in_progress: int | None = None
    # the outcome, once known
    final_state: str = ""  # COMPLETED / CANCELED
    reason_text: str = ""
    reason_code: dict[str, str] = field(default_factory=dict)
    record_uid: str = ""
    record_class_uid: str = ""
    record_study_uid: str = ""
    record_series_uid: str = ""
    record_ae: str = ""  # where the record is (to be) stored
    record_stored: bool = False

    @classmethod
    def from_json(cls, data: dict) -> ClaimEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class PendingRecord:
    """A record waiting for its C-STORE acknowledgement."""

    sop_instance_uid: str
    destination_ae: str
    ups_uid: str
    path: Path


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Journal:
    """Claims and pending records of one device, in ``root`` (created if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.claims_dir = self.root / "claims"
        self.records_dir = self.root / "records"
        try:
            self.claims_dir.mkdir(parents=True, exist_ok=True)
            self.records_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"journal directory {self.root}: cannot create it: {exc}") from None

    # -- claims ----------------------------------------------------------------------------------
    def _claim_path(self, ups_uid: str) -> Path:
        return self.claims_dir / f"{ups_uid}.json"

    def save_claim(self, entry: ClaimEntry) -> None:
        """Write (or overwrite) the claim entry durably."""
        path = self._claim_path(entry.ups_uid)
        try:
            _atomic_write_bytes(path, json.dumps(asdict(entry), indent=1, sort_keys=True).encode())
        except OSError as exc:
            raise JournalError(f"journal {path}: cannot write claim: {exc}") from None

    def remove_claim(self, ups_uid: str) -> None:
        self._claim_path(ups_uid).unlink(missing_ok=True)

    def claims(self) -> list[ClaimEntry]:
        """Every journaled claim, oldest file first (a broken file is logged and skipped)."""
        entries = []
        paths = sorted(self.claims_dir.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        for path in paths:
            try:
                entries.append(ClaimEntry.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                LOG.error("journal %s: unreadable claim entry skipped: %s", path, exc)
        return entries

    def claim(self, ups_uid: str) -> ClaimEntry | None:
        path = self._claim_path(ups_uid)
        if not path.exists():
            return None
        return ClaimEntry.from_json(json.loads(path.read_text()))

    # -- records ---------------------------------------------------------------------------------
    def add_record(self, record: Dataset, destination_ae: str, ups_uid: str = "") -> PendingRecord:
        """Keep ``record`` on disk until :meth:`remove_record` (call before sending it)."""
        uid = str(record.SOPInstanceUID)
        path = self.records_dir / f"{uid}.dcm"
        meta = self.records_dir / f"{uid}.json"
        try:
            tmp = path.with_name(f".{path.name}.tmp")
            dcmwrite(tmp, record, enforce_file_format=True)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _atomic_write_bytes(
                meta, json.dumps({"destination_ae": destination_ae, "ups_uid": ups_uid}).encode()
            )
        except OSError as exc:
            raise JournalError(f"journal {path}: cannot write record: {exc}") from None
        return PendingRecord(uid, destination_ae, ups_uid, path)

    def pending_records(self) -> list[PendingRecord]:
        pending = []
        for meta in sorted(self.records_dir.glob("*.json")):
            path = meta.with_suffix(".dcm")
            try:
                info = json.loads(meta.read_text())
            except (OSError, ValueError) as exc:
                LOG.error("journal %s: unreadable record entry skipped: %s", meta, exc)
                continue
            if not path.exists():
                LOG.error("journal %s: record file %s is missing; entry dropped", meta, path.name)
                meta.unlink(missing_ok=True)
                continue
            pending.append(
                PendingRecord(meta.stem, info.get("destination_ae", ""), info.get("ups_uid", ""), path)
            )
        return pending

    def read_record(self, pending: PendingRecord) -> Dataset:
        return dcmread(pending.path)

    def remove_record(self, sop_instance_uid: str) -> None:
        (self.records_dir / f"{sop_instance_uid}.json").unlink(missing_ok=True)
        (self.records_dir / f"{sop_instance_uid}.dcm").unlink(missing_ok=True)
