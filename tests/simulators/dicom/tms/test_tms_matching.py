"""C-FIND matching (PS3.4 C.2.2.2) and return-key building, on plain Datasets."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from simulators.dicom.tms.matching import MatchKeyError, build_response, match_dataset, strip_tags


def record() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-42"
    ds.ProcedureStepState = "SCHEDULED"
    ds.ScheduledProcedureStepStartDateTime = "20240315093000"
    ds.StudyDate = "20240315"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.NumberOfFractionsPlanned = "5"
    ds.TransactionUID = "9.9.9"
    code_a = Dataset()
    code_a.CodeValue = "LINAC1"
    code_a.CodingSchemeDesignator = "RTSIM"
    code_b = Dataset()
    code_b.CodeValue = "121726"
    code_b.CodingSchemeDesignator = "DCM"
    ds.ScheduledStationNameCodeSequence = Sequence([code_a])
    ds.ScheduledWorkitemCodeSequence = Sequence([code_b])
    return ds


def query(**keys) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"ProcedureStepState": ""}, True),  # universal
        ({"ProcedureStepState": "SCHEDULED"}, True),
        ({"ProcedureStepState": "COMPLETED"}, False),
        ({"ProcedureStepState": "scheduled"}, False),  # CS is case-sensitive
        ({"PatientName": "doe^*"}, True),  # PN case-insensitive wildcard
        ({"PatientName": "Doe^Jan?"}, True),
        ({"PatientName": "Doe^Ja?"}, False),
        ({"PatientID": "PID-*"}, True),
        ({"PatientID": "*"}, True),
        ({"SOPInstanceUID": ["1.2.3", "1.2.3.4"]}, True),  # list of UIDs
        ({"SOPInstanceUID": "1.2.3"}, False),
        ({"ScheduledProcedureStepStartDateTime": "20240315000000-20240315235959"}, True),
        ({"ScheduledProcedureStepStartDateTime": "20240315-20240315"}, True),  # partial precision widened
        ({"ScheduledProcedureStepStartDateTime": "20240316-"}, False),
        ({"ScheduledProcedureStepStartDateTime": "-20240315093000"}, True),
        ({"ScheduledProcedureStepStartDateTime": "202403"}, True),  # the whole month
        ({"StudyDate": "20240301-20240331"}, True),
        ({"StudyDate": "20240316"}, False),
        ({"NumberOfFractionsPlanned": "5"}, True),
        ({"NumberOfFractionsPlanned": "6"}, False),
        ({"AccessionNumber": "A1"}, False),  # key with a value, absent in the record
        ({"AccessionNumber": ""}, True),
    ],
)
def test_single_keys(keys, expected):
    assert match_dataset(record(), query(**keys)) is expected


def test_sequence_matching():
    item = Dataset()
    item.CodeValue = "LINAC1"
    item.CodingSchemeDesignator = ""
    assert match_dataset(record(), query(ScheduledStationNameCodeSequence=Sequence([item])))
    item.CodeValue = "LINAC2"
    assert not match_dataset(record(), query(ScheduledStationNameCodeSequence=Sequence([item])))
    empty = Dataset()
    empty.CodeValue = ""
    assert match_dataset(record(), query(ScheduledStationNameCodeSequence=Sequence([empty])))
    assert match_dataset(record(), query(ScheduledStationNameCodeSequence=Sequence()))
    assert match_dataset(record(), query(InputInformationSequence=Sequence()))  # absent but universal
    item.CodeValue = "LINAC1"
    assert not match_dataset(record(), query(InputInformationSequence=Sequence([item])))


def test_invalid_range_raises():
    with pytest.raises(MatchKeyError, match="ScheduledProcedureStepStartDateTime"):
        match_dataset(record(), query(ScheduledProcedureStepStartDateTime="soon"))


def test_skipped_tags_do_not_match_or_return():
    q = query(TransactionUID="9.9.9", ProcedureStepState="")
    assert match_dataset(record(), query(TransactionUID="1.1"), skip=[0x00081195])
    response = build_response(record(), q, never_return=[0x00081195])
    assert 0x00081195 not in response
    assert response.ProcedureStepState == "SCHEDULED"


def test_build_response_reduces_sequence_items_and_fills_missing_keys():
    item = Dataset()
    item.CodeValue = ""
    q = query(
        ScheduledStationNameCodeSequence=Sequence([item]),
        AccessionNumber="",
        ScheduledWorkitemCodeSequence=Sequence(),
    )
    response = build_response(record(), q)
    assert response.ScheduledStationNameCodeSequence[0].CodeValue == "LINAC1"
    assert "CodingSchemeDesignator" not in response.ScheduledStationNameCodeSequence[0]
    assert response.ScheduledWorkitemCodeSequence[0].CodingSchemeDesignator == "DCM"  # whole sequence
    assert response.AccessionNumber in ("", None)
    assert "PatientName" not in response


def test_strip_tags_is_deep():
    ds = record()
    inner = Dataset()
    inner.TransactionUID = "1.2"
    ds.ScheduledStationNameCodeSequence[0].ReferencedSOPSequence = Sequence([inner])
    stripped = strip_tags(ds, [0x00081195])
    assert 0x00081195 not in stripped
    assert 0x00081195 not in stripped.ScheduledStationNameCodeSequence[0].ReferencedSOPSequence[0]
    assert ds.TransactionUID == "9.9.9"  # the original is untouched


_DATETIMES = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31))


@given(_DATETIMES, _DATETIMES, _DATETIMES)
def test_dt_range_agrees_with_datetime_comparison(value, low, high):
    rec = Dataset()
    rec.ScheduledProcedureStepStartDateTime = value.strftime("%Y%m%d%H%M%S")
    key = f"{low.strftime('%Y%m%d%H%M%S')}-{high.strftime('%Y%m%d%H%M%S')}"
    expected = low.replace(microsecond=0) <= value.replace(microsecond=0) <= high.replace(microsecond=0)
    assert match_dataset(rec, query(ScheduledProcedureStepStartDateTime=key)) is expected
