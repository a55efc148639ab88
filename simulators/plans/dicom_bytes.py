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

import contextlib
import functools
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
_EXPLICIT_HEADER = struct.Struct("<HH2sH").unpack_from  # group, element, VR, 2-byte length
_IMPLICIT_HEADER = struct.Struct("<HHI").unpack_from  # group, element, 4-byte length
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from


class DicomBytesError(ValueError):
    """The bytes are not well-formed DICOM where the reader looked (names the byte offset)."""


class RawItem(dict[int, "bytes | list[RawItem]"]):
    """One still-encoded sequence item: tag -> value bytes, or the list of items of a nested sequence."""


class ParsedSequence(bytes):
    """The encoded value of a lazy sequence that had to be parsed to find its end (undefined length),
    carrying its parsed items so that :func:`parse_items` does not parse it twice."""

    def __new__(cls, value: bytes, items: list[RawItem]) -> ParsedSequence:
        encoded = super().__new__(cls, value)
        encoded.items = items
        return encoded

    def __getnewargs__(self) -> tuple[bytes, list[RawItem]]:  # copy, deepcopy and pickle
        return bytes(self), self.items

    items: list[RawItem]


_SEQUENCE_TAGS: dict[int, bool] = {}


def _is_sequence_tag(tag: int) -> bool:
    """Whether the data dictionary makes ``tag`` a sequence (implicit VR data); remembered per tag."""
    known = _SEQUENCE_TAGS.get(tag)
    if known is None:
        try:
            known = dictionary_VR(tag) == "SQ"
        except KeyError:
            known = False
        _SEQUENCE_TAGS[tag] = known
    return known


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
    if implicit:
        group, element, length = _IMPLICIT_HEADER(buf, pos)
        return group << 16 | element, None, length, pos + 8
    group, element, vr, short_length = _EXPLICIT_HEADER(buf, pos)
    tag = group << 16 | element
    if group == 0xFFFE:  # items and delimiters have no VR in any transfer syntax
        return tag, None, _U32(buf, pos + 4)[0], pos + 8
    if vr in _LONG_LENGTH_VRS:
        if pos + 12 > len(buf):
            raise DicomBytesError(f"byte {pos}: an element header runs past the end of the data")
        return tag, vr, _U32(buf, pos + 8)[0], pos + 12
    if vr not in _KNOWN_VRS:
        raise DicomBytesError(f"byte {pos}: {_tag_text(tag)} has no valid VR ({vr!r})")
    return tag, vr, short_length, pos + 8


def _is_sequence(tag: int, vr: bytes | None, length: int) -> bool:
    if vr is not None:
        if vr == b"UN" and length == _UNDEFINED:  # an implicit VR sequence inside explicit VR data
            raise DicomBytesError(f"{_tag_text(tag)} is an undefined-length UN")
        return vr == b"SQ"
    return _is_sequence_tag(tag) or length == _UNDEFINED


ItemReader = Callable[[bytes, int, "int | None", bool], tuple[Any, int]]


def _read_items(
    buf: bytes, pos: int, end: int | None, implicit: bool, read_item: ItemReader
) -> tuple[list, int]:
    """The items of a sequence value from ``pos``, each made by ``read_item``, and the offset after the
    sequence (``end`` for a defined length; ``end`` None: after its Sequence Delimitation Item)."""
    items = []
    limit = len(buf) if end is None else end
    while pos < limit:
        tag, _, length, start = _header(buf, pos, True)
        if tag == _SEQUENCE_END and end is None:
            return items, start
        if tag != _ITEM:
            raise DicomBytesError(f"byte {pos}: expected a sequence item, found {_tag_text(tag)}")
        if length == _UNDEFINED:
            item, pos = read_item(buf, start, None, implicit)
        else:
            pos = start + length
            if pos > limit:
                raise DicomBytesError(f"byte {start - 8}: an item of {length} bytes runs past its sequence")
            item, _ = read_item(buf, start, pos, implicit)
        items.append(item)
    if end is None:
        raise DicomBytesError("a sequence of undefined length has no Sequence Delimitation Item")
    return items, pos


def _read_raw_item(buf: bytes, pos: int, end: int | None, implicit: bool) -> tuple[RawItem, int]:
    """One item as a :class:`RawItem` and the offset after it (``end`` None: after its Item Delimiter).

    A sequence written as UN (a writer that did not know the tag) is read as the Implicit VR Little
    Endian sequence PS3.5 6.2.2 says its value is, as pydicom reads it.
    """
    item = RawItem()
    limit = len(buf) if end is None else end
    while pos < limit:
        tag, vr, length, start = _header(buf, pos, implicit)
        undefined = length == _UNDEFINED
        if tag == _ITEM_END and end is None:
            return item, start
        if not undefined:
            pos = start + length
            if pos > limit:
                raise _overrun(tag, start, length)
        if vr == b"UN":
            sequence, nested_implicit = undefined or _is_sequence_tag(tag), True
        else:
            sequence, nested_implicit = _is_sequence(tag, vr, length), implicit
        if sequence:
            stop = None if undefined else pos
            item[tag], pos = _read_items(buf, start, stop, nested_implicit, _read_raw_item)
        elif undefined:
            raise DicomBytesError(f"byte {start - 8}: {_tag_text(tag)} has an undefined length")
        else:
            item[tag] = buf[start:pos]
    if end is None:
        raise DicomBytesError("an item of undefined length has no Item Delimitation Item")
    return item, pos


def parse_items(value: bytes, implicit: bool) -> list[RawItem]:
    """The items of a still-encoded sequence value (little endian), nested sequences parsed too."""
    if isinstance(value, ParsedSequence):
        return value.items
    items, _ = _read_items(value, 0, len(value), implicit, _read_raw_item)
    return items


def complete_items(value: bytes, implicit: bool) -> list[RawItem]:
    """The items of a damaged sequence value up to the first one that cannot be read (for messages)."""
    items: list[RawItem] = []

    def keep(buf: bytes, pos: int, end: int | None, implicit: bool) -> tuple[RawItem, int]:
        item, after = _read_raw_item(buf, pos, end, implicit)
        items.append(item)
        return item, after

    with contextlib.suppress(DicomBytesError):
        _read_items(value, 0, len(value), implicit, keep)
    return items


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
    elements, _ = _dataset_elements(buf, pos, len(buf), implicit, default_encoding)
    dataset = Dataset(elements)
    ds = FileDataset(str(path), dataset, buf[:_PREAMBLE_BYTES], meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    return ds


def _dataset_elements(
    buf: bytes, pos: int, end: int | None, implicit: bool, encoding: str | list[str]
) -> tuple[dict[BaseTag, DataElement | RawDataElement], int]:
    """The elements from ``pos`` to ``end`` (None: to an Item Delimitation Item) and the offset after them.

    Sequences become lists of Datasets, except the lazy ones (one raw ``SQ`` element each).
    """
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    limit = len(buf) if end is None else end
    while pos < limit:
        tag, vr, length, start = _header(buf, pos, implicit)
        if tag == _ITEM_END and end is None:
            return elements, start
        key = BaseTag(tag)
        undefined = length == _UNDEFINED
        if not undefined and start + length > limit:
            raise _overrun(tag, start, length)
        if undefined or _is_sequence(tag, vr, length):
            stop = None if undefined else start + length
            if tag in LAZY_SEQUENCE_TAGS:  # one raw SQ element: its items, without the delimiter
                if undefined:
                    items, pos = _read_items(buf, start, None, implicit, _read_raw_item)
                    value: bytes = ParsedSequence(buf[start : pos - 8], items)
                else:
                    pos = start + length
                    value = buf[start:pos]
                elements[key] = RawDataElement(key, "SQ", len(value), value, start, implicit, True)
            else:
                read_item = functools.partial(_read_item_dataset, encoding=encoding)
                items, pos = _read_items(buf, start, stop, implicit, read_item)
                elements[key] = DataElement(key, "SQ", items, is_undefined_length=undefined)
            continue
        pos = start + length
        elements[key] = RawDataElement(
            key, vr.decode() if vr else None, length, buf[start:pos], start, implicit, True
        )
        if tag == _SPECIFIC_CHARACTER_SET:
            text = buf[start:pos].decode("ascii", "replace").strip("\x00 ")
            encoding = convert_encodings([part.strip() for part in text.split("\\")])
    if end is None:
        raise DicomBytesError("an item of undefined length has no Item Delimitation Item")
    return elements, pos


def _read_item_dataset(
    buf: bytes, pos: int, end: int | None, implicit: bool, *, encoding: str | list[str]
) -> tuple[Dataset, int]:
    elements, after = _dataset_elements(buf, pos, end, implicit, encoding)
    item = Dataset(elements, parent_encoding=encoding)
    item.set_original_encoding(implicit, True, item._character_set)
    item.is_undefined_length_sequence_item = end is None
    return item, after
