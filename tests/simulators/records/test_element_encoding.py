"""The direct Explicit VR Little Endian encoder agrees byte for byte with pydicom's writer."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence as DicomSequence

from simulators.records.element_encoding import ElementKey, encode_item_parts, raw_sequence_element


def _pydicom_bytes(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = False, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def _control_point() -> Dataset:
    cp = Dataset()
    cp.ReferencedControlPointIndex = 3
    cp.TreatmentControlPointTime = "080000.123456"  # odd length: padded with a space
    cp.DeliveredMeterset = "12.5"
    cp.DoseRateSet = None  # empty Type 2 value
    device = Dataset()
    device.RTBeamLimitingDeviceType = "MLCX"
    device.LeafJawPositions = "-1.5\\2\\3.25"
    cp.BeamLimitingDevicePositionSequence = DicomSequence([device])
    return cp


def _encoded_control_point() -> bytes:
    k = {kw: ElementKey(kw) for kw in ("RTBeamLimitingDeviceType", "LeafJawPositions")}
    device = encode_item_parts(  # in tag order, as the caller must give them
        [k["RTBeamLimitingDeviceType"].text("MLCX"), k["LeafJawPositions"].text("-1.5\\2\\3.25")]
    )
    elements = []
    for keyword, text in (
        ("TreatmentControlPointTime", "080000.123456"),
        ("ReferencedControlPointIndex", "3"),
        ("DeliveredMeterset", "12.5"),
        ("DoseRateSet", None),
    ):
        key = ElementKey(keyword)
        elements.append((key.tag, key.text(text)))
    sequence = ElementKey("BeamLimitingDevicePositionSequence")
    elements.append((sequence.tag, sequence.sequence([device])))
    return encode_item_parts([encoded for _, encoded in sorted(elements)])


def test_item_bytes_equal_pydicom_written_item() -> None:
    expected = _pydicom_bytes(_control_point())
    encoded = _encoded_control_point()
    assert encoded[8:] == expected  # after the item tag and its defined length
    assert int.from_bytes(encoded[4:8], "little") == len(expected)


def test_raw_sequence_element_is_written_as_is_and_reads_back() -> None:
    ds = Dataset()
    ds.PatientID = "X"
    key = ElementKey("ControlPointDeliverySequence")
    ds[key.tag] = raw_sequence_element(key, [_encoded_control_point(), _encoded_control_point()])
    ds.set_original_encoding(False, True, ds._character_set)
    reference = Dataset()
    reference.PatientID = "X"
    reference.ControlPointDeliverySequence = DicomSequence([_control_point(), _control_point()])
    assert _pydicom_bytes(ds) == _pydicom_bytes(reference)
    back = ds.ControlPointDeliverySequence  # decoded lazily by pydicom
    assert len(back) == 2
    assert back[1].BeamLimitingDevicePositionSequence[0].LeafJawPositions == [-1.5, 2, 3.25]
    assert back[0].DoseRateSet is None or back[0].DoseRateSet == ""


def test_written_file_round_trips_through_dcmread(tmp_path) -> None:
    ds = Dataset()
    key = ElementKey("ControlPointDeliverySequence")
    ds[key.tag] = raw_sequence_element(key, [_encoded_control_point()])
    ds.set_original_encoding(False, True, ds._character_set)
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=True)  # another transfer syntax: pydicom decodes and re-encodes
    back = dcmread(BytesIO(buffer.getvalue()), force=True)
    assert back.ControlPointDeliverySequence[0].ReferencedControlPointIndex == 3


def test_values_too_long_for_a_short_element_are_refused() -> None:
    with pytest.raises(ValueError, match="LeafJawPositions"):
        ElementKey("LeafJawPositions").text("1\\" * 40000)
    with pytest.raises(KeyError):
        ElementKey("NotAKeyword")
