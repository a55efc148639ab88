"""A fast reader for little-endian DICOM: Part 10 files into pydicom Datasets, big sequences left encoded.

pydicom decodes every sequence item of a file into a Dataset, element by element in Python. In an RT Plan
~95 % of the elements sit in the Control Point Sequences, which the plan reader turns into numpy arrays
anyway, so decoding them as Datasets first was most of a fast-mode delivery's wall time. Here:

* :func:`read_part10` walks a Part 10 file (Implicit or Explicit VR Little Endian) and builds the same
  pydicom Datasets that ``dcmread`` would, with every value still raw (decoded by pydicom on access),
  except that the sequences named in ``LAZY_SEQUENCE_TAGS`` stay one raw ``SQ`` element (pydicom decodes
  it on access too, so nothing else has to know).
* :func:`parse_items` turns such a still-encoded sequence into :class:`RawItem` s (tag -> value bytes)
  for the plan reader.

Anything else (big endian, deflate, a file without preamble or file meta, a value that is not where its
length says) is not guessed at: :func:`read_part10` returns None or raises :class:`DicomBytesError`, and the
caller reads the file with pydicom instead.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

CONTROL_POINT_SEQUENCE_TAG = 0x300A0111
LAZY_SEQUENCE_TAGS = frozenset({CONTROL_POINT_SEQUENCE_TAG})

_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_SPECIFIC_CHARACTER_SET = 0x00080005
_PREAMBLE_BYTES = 128
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_KNOWN_VRS = _LONG_LENGTH_VRS | {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH",
    b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip
_TAG = struct.Struct("<HH").unpack_from
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from


class DicomBytesError(ValueError):
    """The bytes are not well-formed DICOM where the reader looked (names the byte offset)."""


class RawItem(dict[int, "bytes | list[RawItem]"]):
    """One still-encoded sequence item: tag -> value bytes, or the list of items of a nested sequence."""


@lru_cache(maxsize=4096)
def _is_sequence_tag(tag: int) -> bool:
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _overrun(tag: int, start: int, length: int) -> DicomBytesError:
    return DicomBytesError(
        f"byte {start}: {_tag_text(tag)} value of {length} bytes runs past the end of its item or file"
        " (truncated?)"
    )


def _header(buf: bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, value offset) of the element at ``pos``."""
    if pos + 8 > len(buf):
        raise DicomBytesError(f"byte {pos}: an element header runs past the end of the data")
    group, element = _TAG(buf, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # items and delimiters have no VR in any transfer syntax
        return tag, None, _U32(buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4 : pos + 6]
    if vr in _LONG_LENGTH_VRS:
        if pos + 12 > len(buf):
            raise DicomBytesError(f"byte {pos}: an element header runs past the end of the data")
        return tag, vr, _U32(buf, pos + 8)[0], pos + 12
    if vr not in _KNOWN_VRS:
        raise DicomBytesError(f"byte {pos}: {_tag_text(tag)} has no valid VR ({vr!r})")
    return tag, vr, _U16(buf, pos + 6)[0], pos + 8


def _is_sequence(tag: int, vr: bytes | None, length: int) -> bool:
    if vr is not None:
        if vr == b"UN" and length == _UNDEFINED:  # an implicit VR sequence inside explicit VR data
            raise DicomBytesError(f"{_tag_text(tag)} is an undefined-length UN")
        return vr == b"SQ"
    return _is_sequence_tag(tag) or length == _UNDEFINED


def _walk_items(
    buf: bytes, pos: int, end: int | None, implicit: bool
) -> tuple[list[tuple[int, int, bool]], int]:
    """The items of a sequence value starting at ``pos``: ``[(start, stop, undefined length)]`` and the
    offset after the sequence (``end`` for a defined length, after the delimiter otherwise)."""
    items = []
    limit = len(buf) if end is None else end
    while pos < limit:
        tag, _, length, start = _header(buf, pos, True)
        if tag == _SEQUENCE_END and end is None:
            return items, start
        if tag != _ITEM:
            raise DicomBytesError(f"byte {pos}: expected a sequence item, found {_tag_text(tag)}")
        if length == _UNDEFINED:
            stop, pos = _walk_dataset(buf, start, None, implicit)
            items.append((start, stop, True))
        else:
            if start + length > limit:
                raise DicomBytesError(f"byte {pos}: an item of {length} bytes runs past its sequence")
            items.append((start, start + length, False))
            pos = start + length
    if end is None:
        raise DicomBytesError("a sequence of undefined length has no Sequence Delimitation Item")
    return items, pos


def _walk_dataset(buf: bytes, pos: int, end: int | None, implicit: bool) -> tuple[int, int]:
    """Skip the elements of a dataset; returns (end of its elements, offset after any Item Delimiter)."""
    limit = len(buf) if end is None else end
    while pos < limit:
        tag, vr, length, start = _header(buf, pos, implicit)
        if tag == _ITEM_END:
            if end is not None:
                raise DicomBytesError(f"byte {pos}: an Item Delimitation Item inside a defined-length item")
            return pos, start
        if length == _UNDEFINED:
            if not _is_sequence(tag, vr, length):
                raise DicomBytesError(f"byte {pos}: {_tag_text(tag)} has an undefined length")
            _, pos = _walk_items(buf, start, None, implicit)
        else:
            pos = start + length
            if pos > limit:
                raise _overrun(tag, start, length)
    if end is None:
        raise DicomBytesError("an item of undefined length has no Item Delimitation Item")
    return pos, pos


def parse_items(value: bytes, implicit: bool) -> list[RawItem]:
    """The items of a still-encoded sequence value (little endian), nested sequences parsed too."""
    spans, _ = _walk_items(value, 0, len(value), implicit)
    return [_raw_item(value, start, stop, implicit) for start, stop, _ in spans]


def complete_items(value: bytes, implicit: bool) -> list[RawItem]:
    """The items of a damaged sequence value up to the first one that cannot be read (for messages)."""
    items: list[RawItem] = []
    pos = 0
    while pos + 8 <= len(value):
        try:
            tag, _, length, start = _header(value, pos, True)
            if tag != _ITEM:
                break
            if length == _UNDEFINED:
                stop, after = _walk_dataset(value, start, None, implicit)
            else:
                stop = after = start + length
                if stop > len(value):
                    break
            items.append(_raw_item(value, start, stop, implicit))
        except DicomBytesError:
            break
        pos = after
    return items


def _raw_item(buf: bytes, pos: int, stop: int, implicit: bool) -> RawItem:
    item = RawItem()
    while pos < stop:
        tag, vr, length, start = _header(buf, pos, implicit)
        undefined = length == _UNDEFINED
        if not undefined and start + length > stop:
            raise _overrun(tag, start, length)
        if undefined or _is_sequence(tag, vr, length):
            spans, pos = _walk_items(buf, start, None if undefined else start + length, implicit)
            item[tag] = [_raw_item(buf, a, b, implicit) for a, b, _ in spans]
        else:
            pos = start + length
            item[tag] = buf[start:pos]
    return item


def read_part10(path: str | Path) -> FileDataset | None:
    """The file as pydicom would read it (raw values, lazy sequences), or None when it is not a Part 10
    file in Implicit/Explicit VR Little Endian. Raises :class:`DicomBytesError` for malformed bytes."""
    buf = Path(path).read_bytes()
    if buf[_PREAMBLE_BYTES : _PREAMBLE_BYTES + 4] != b"DICM":
        return None
    meta_elements: dict[BaseTag, RawDataElement] = {}
    pos = _PREAMBLE_BYTES + 4
    while pos + 8 <= len(buf) and _TAG(buf, pos)[0] == 0x0002:
        tag, vr, length, start = _header(buf, pos, False)
        if length == _UNDEFINED or start + length > len(buf):
            raise DicomBytesError(f"byte {pos}: a file meta element's length runs past the end of the file")
        pos = start + length
        meta_elements[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), vr.decode() if vr else None, length, buf[start:pos], start, False, True
        )
    meta = FileMetaDataset(Dataset(meta_elements))
    syntax = str(meta.get("TransferSyntaxUID", "")).strip("\x00 ")
    if syntax not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        return None
    implicit = syntax == ImplicitVRLittleEndian
    dataset = Dataset(_dataset_elements(buf, pos, len(buf), implicit, default_encoding))
    ds = FileDataset(str(path), dataset, buf[:_PREAMBLE_BYTES], meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    return ds


def _dataset_elements(
    buf: bytes, pos: int, end: int, implicit: bool, encoding: str | list[str]
) -> dict[BaseTag, DataElement | RawDataElement]:
    """The elements from ``pos`` to ``end``, sequences as Datasets (lazy ones as one raw element)."""
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    while pos < end:
        tag, vr, length, start = _header(buf, pos, implicit)
        key = BaseTag(tag)
        vr_text = vr.decode() if vr else None
        if length == _UNDEFINED or _is_sequence(tag, vr, length):
            undefined = length == _UNDEFINED
            if not undefined and start + length > end:
                raise _overrun(tag, start, length)
            spans, after = _walk_items(buf, start, None if undefined else start + length, implicit)
            if tag in LAZY_SEQUENCE_TAGS:  # one raw SQ element: its items, without the delimiter
                value = buf[start : after - 8 if undefined else after]
                elements[key] = RawDataElement(key, "SQ", len(value), value, start, implicit, True)
            else:
                items = [_item_dataset(buf, span, implicit, encoding) for span in spans]
                elements[key] = DataElement(key, "SQ", items, is_undefined_length=undefined)
            pos = after
            continue
        pos = start + length
        if pos > end:
            raise _overrun(tag, start, length)
        elements[key] = RawDataElement(key, vr_text, length, buf[start:pos], start, implicit, True)
        if tag == _SPECIFIC_CHARACTER_SET:
            encoding = convert_encodings(
                [
                    part.strip()
                    for part in buf[start:pos].decode("ascii", "replace").strip("\x00 ").split("\\")
                ]
            )
    return elements


def _item_dataset(
    buf: bytes, span: tuple[int, int, bool], implicit: bool, encoding: str | list[str]
) -> Dataset:
    start, stop, undefined = span
    item = Dataset(_dataset_elements(buf, start, stop, implicit, encoding), parent_encoding=encoding)
    item.set_original_encoding(implicit, True, item._character_set)
    item.is_undefined_length_sequence_item = undefined
    return item
