"""The device journal: claims and pending records survive a restart; writes are atomic."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from simulators.dicom.tdd.journal import ClaimEntry, Journal, Phase


def record() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.4"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "P1"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_claims_round_trip_through_a_new_journal_instance(tmp_path):
    journal = Journal(tmp_path / "j")
    entry = ClaimEntry("1.2.3", "9.9.9", station_code={"value": "TB1", "scheme": "RTSIM", "meaning": "x"})
    journal.save_claim(entry)
    entry.phase = Phase.DELIVERING
    entry.progress_percent = 42.5
    journal.save_claim(entry)
    reopened = Journal(tmp_path / "j")
    assert reopened.claims() == [entry]
    assert reopened.claim("1.2.3").progress_percent == 42.5
    assert not list((tmp_path / "j" / "claims").glob(".*tmp"))  # no temporary file left behind
    reopened.remove_claim("1.2.3")
    assert reopened.claims() == []
    assert reopened.claim("1.2.3") is None


def test_unreadable_claim_is_skipped_not_fatal(tmp_path):
    journal = Journal(tmp_path)
    journal.save_claim(ClaimEntry("1.1", "2.2"))
    (tmp_path / "claims" / "broken.json").write_text("{not json")
    assert [c.ups_uid for c in journal.claims()] == ["1.1"]


def test_pending_records_keep_the_dataset_and_destination(tmp_path):
    journal = Journal(tmp_path)
    ds = record()
    pending = journal.add_record(ds, "OST", "1.2.3")
    found = Journal(tmp_path).pending_records()
    assert [(p.sop_instance_uid, p.destination_ae, p.ups_uid) for p in found] == [
        (str(ds.SOPInstanceUID), "OST", "1.2.3")
    ]
    back = journal.read_record(pending)
    assert back.PatientID == "P1"
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    journal.remove_record(pending.sop_instance_uid)
    assert journal.pending_records() == []


def test_record_sidecar_without_its_file_is_dropped(tmp_path):
    journal = Journal(tmp_path)
    pending = journal.add_record(record(), "OST")
    pending.path.unlink()
    assert journal.pending_records() == []
    assert not list((tmp_path / "records").iterdir())
