"""The fast little-endian reader builds what pydicom builds, and refuses what it does not understand."""

from __future__ import annotations

import copy
import pickle
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RTPlanStorage,
)
from rtsim_testdata import IHE_RO_DIR

from simulators.plans.dicom_bytes import (
    CONTROL_POINT_SEQUENCE_TAG,
    DicomBytesError,
    complete_items,
    parse_items,
    read_part10,
)
from simulators.plans.dicom_reader import read_plan_dataset

IHE_RO_FILES = sorted(IHE_RO_DIR.rglob("*.dcm"))
PYDICOM_FILES = [
    get_testdata_file(name) for name in ("rtplan.dcm", "rtdose.dcm", "CT_small.dcm", "rtstruct.dcm")
]


@pytest.mark.parametrize("path", IHE_RO_FILES + PYDICOM_FILES, ids=lambda p: str(p).split("/")[-1])
def test_reads_what_pydicom_reads(path: Path) -> None:
    fast = read_part10(path)
    if fast is None:  # not a plain Part 10 little-endian file: the caller falls back to pydicom
        return
    reference = pydicom.dcmread(path, force=True)
    assert fast == reference  # every element, decoded, nested sequences included
    assert fast.file_meta == reference.file_meta
    assert fast.preamble == reference.preamble


def test_most_ihe_ro_files_take_the_fast_path() -> None:
    handled = [p for p in IHE_RO_FILES if read_part10(p) is not None]
    assert len(handled) >= len(IHE_RO_FILES) - 3, "only files without file meta may fall back to pydicom"


def _plan(undefined: bool) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.SOPClassUID = RTPlanStorage
    ds.SOPInstanceUID = "1.2.3.4"
    beam = Dataset()
    beam.BeamNumber = 1
    beam.BeamName = "Ärm"
    control_points = []
    for index in range(3):
        cp = Dataset()
        cp.ControlPointIndex = index
        cp.CumulativeMetersetWeight = str(index / 2)
        device = Dataset()
        device.RTBeamLimitingDeviceType = "ASYMX"
        device.LeafJawPositions = [-50.5, 50 + index]
        cp.BeamLimitingDevicePositionSequence = DicomSequence([device])
        cp.is_undefined_length_sequence_item = undefined
        device.is_undefined_length_sequence_item = undefined
        control_points.append(cp)
    beam.ControlPointSequence = DicomSequence(control_points)
    beam.is_undefined_length_sequence_item = undefined
    ds.BeamSequence = DicomSequence([beam])
    if undefined:
        ds["BeamSequence"].is_undefined_length = True
        beam["ControlPointSequence"].is_undefined_length = True
        for cp in control_points:
            cp["BeamLimitingDevicePositionSequence"].is_undefined_length = True
    return ds


def _write(ds: Dataset, path: Path, syntax: str) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined-lengths"])
@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian], ids=["implicit", "explicit"]
)
def test_sequences_of_both_length_kinds_and_a_character_set(
    tmp_path: Path, undefined: bool, syntax: str
) -> None:
    path = _write(_plan(undefined), tmp_path / "plan.dcm", syntax)
    fast = read_part10(path)
    assert fast is not None
    element = fast.BeamSequence[0].get_item(CONTROL_POINT_SEQUENCE_TAG)
    assert isinstance(element, RawDataElement)  # left encoded for the plan reader
    items = parse_items(element.value, element.is_implicit_VR)
    assert [item[0x300A0112] for item in items] == [b"0 ", b"1 ", b"2 "]  # IS padded to even length
    device = items[2][0x300A011A][0]
    assert device[0x300A00B8].strip() == b"ASYMX"
    assert [float(v) for v in device[0x300A011C].split(b"\\")] == [-50.5, 52.0]
    assert len(fast.BeamSequence[0].ControlPointSequence) == 3  # pydicom still decodes it on access
    assert fast == pydicom.dcmread(path)
    assert str(fast.PatientName) == "Müller^Jürgen"
    assert fast.BeamSequence[0].BeamName == "Ärm"


@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_other_transfer_syntaxes_are_left_to_pydicom(tmp_path: Path, syntax: str) -> None:
    path = _write(_plan(False), tmp_path / "plan.dcm", syntax)
    assert read_part10(path) is None


def test_a_file_without_preamble_is_left_to_pydicom(tmp_path: Path) -> None:
    path = tmp_path / "bare.dcm"
    _plan(False).save_as(path, implicit_vr=True)  # no preamble, no file meta
    assert read_part10(path) is None


def test_truncated_file_names_the_byte_offset(tmp_path: Path) -> None:
    path = _write(_plan(False), tmp_path / "plan.dcm", ExplicitVRLittleEndian)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DicomBytesError, match=r"byte \d+: .* runs past"):
        read_part10(path)


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined-lengths"])
def test_complete_items_of_a_damaged_sequence(tmp_path: Path, undefined: bool) -> None:
    path = _write(_plan(undefined), tmp_path / "plan.dcm", ExplicitVRLittleEndian)
    element = read_part10(path).BeamSequence[0].get_item(CONTROL_POINT_SEQUENCE_TAG)
    damaged = element.value[: len(element.value) - 30]  # the last item is cut
    with pytest.raises(DicomBytesError):
        parse_items(damaged, False)
    items = complete_items(damaged, False)
    assert [item[0x300A0112] for item in items] == [b"0 ", b"1 "]
    assert complete_items(element.value, False) == parse_items(element.value, False)


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined-lengths"])
def test_a_fast_read_dataset_copies_and_pickles(tmp_path: Path, undefined: bool) -> None:
    path = _write(_plan(undefined), tmp_path / "plan.dcm", ExplicitVRLittleEndian)
    ds = read_part10(path)
    for twin in (copy.deepcopy(ds), copy.copy(ds), pickle.loads(pickle.dumps(ds))):
        element = twin.BeamSequence[0].get_item(CONTROL_POINT_SEQUENCE_TAG)
        assert [item[0x300A0112] for item in parse_items(element.value, False)] == [b"0 ", b"1 ", b"2 "]
        assert twin == pydicom.dcmread(path)


def _encoded_items(items: list[Dataset], implicit: bool) -> bytes:
    """A sequence value: the items as pydicom writes them (defined lengths)."""
    holder = Dataset()
    holder.BeamLimitingDevicePositionSequence = DicomSequence(items)
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, True
    write_dataset(buffer, holder)
    return buffer.getvalue()[8 if implicit else 12 :]  # after the sequence's own header


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined-length"])
def test_a_sequence_written_as_un_is_read_as_its_implicit_vr_value(undefined: bool) -> None:
    """A writer that did not know the tag writes UN; its value is Implicit VR (PS3.5 6.2.2), as pydicom
    reads it."""
    device = Dataset()
    device.RTBeamLimitingDeviceType = "ASYMY"
    device.LeafJawPositions = [-40.0, 60.5]
    implicit_value = _encoded_items([device], implicit=True)
    if undefined:
        un = struct.pack("<HH2s2xI", 0x300A, 0x011A, b"UN", 0xFFFFFFFF) + implicit_value
        un += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    else:
        un = struct.pack("<HH2s2xI", 0x300A, 0x011A, b"UN", len(implicit_value)) + implicit_value
    index = struct.pack("<HH2sH", 0x300A, 0x0112, b"IS", 2) + b"0 "
    body = index + un
    control_points = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body  # one explicit VR item
    (item,) = parse_items(control_points, implicit=False)
    (position,) = item[0x300A011A]
    assert position[0x300A00B8].strip() == b"ASYMY"
    assert position[0x300A011C].strip() == b"-40.0\\60.5"


def test_a_control_point_sequence_element_written_as_un_is_read() -> None:
    """The whole Control Point Sequence as UN in an Explicit VR beam item: the reader parses its value as
    Implicit VR, as pydicom does."""
    reference = pydicom.dcmread(get_testdata_file("rtplan.dcm"), force=True)
    expected = read_plan_dataset(copy.deepcopy(reference), "plan")
    beam = reference.BeamSequence[0]
    value = _encoded_items(list(beam.ControlPointSequence), implicit=True)
    del beam.ControlPointSequence
    beam[0x300A0111] = RawDataElement(BaseTag(0x300A0111), "UN", len(value), value, 0, False, True)
    plan = read_plan_dataset(reference, "plan")
    assert np.array_equal(plan.beams[0].jaw_x_mm, expected.beams[0].jaw_x_mm)
    assert np.array_equal(
        plan.beams[0].cumulative_meterset_weight, expected.beams[0].cumulative_meterset_weight
    )
