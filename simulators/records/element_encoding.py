"""Explicit VR Little Endian encoding of data elements and sequence items, straight to bytes.

A sliding-window record holds ~750 Control Point Delivery Sequence items of ~25 elements each. Building
them as pydicom Datasets and letting pydicom write them was ~90 % of a fast-mode delivery's wall time, so
the record encodes those items here and hands pydicom one pre-encoded sequence element
(:func:`raw_sequence_element`), which it writes as is and decodes lazily if anyone reads it back.
Sequences and items get defined lengths, as pydicom itself writes them (PS3.5 7.5).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

# VRs with a 2-byte reserved field and a 4-byte length in Explicit VR (PS3.5 Table 7.1-1).
_LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_MAX_SHORT_LENGTH = 0xFFFF
_TAG_AND_VR = struct.Struct("<HH2s")
_ITEM_HEADER = struct.Struct("<HHI")
_ITEM_GROUP, _ITEM_ELEMENT = 0xFFFE, 0xE000


class ElementKey:
    """A keyword resolved once to its tag and VR (the dictionary lookups cost more than the encoding)."""

    __slots__ = ("_long_length", "_padding", "_prefix", "keyword", "tag", "vr")

    def __init__(self, keyword: str) -> None:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(f"{keyword!r} is not a DICOM keyword")
        self.keyword = keyword
        self.tag = int(tag)
        self.vr = dictionary_VR(tag)
        self._long_length = self.vr in _LONG_LENGTH_VRS
        header = _TAG_AND_VR.pack(self.tag >> 16, self.tag & 0xFFFF, self.vr.encode())
        self._prefix = header + (b"\x00\x00" if self._long_length else b"")  # the reserved field
        self._padding = b"\x00" if self.vr in ("UI", "OB", "UN") else b" "

    def encode(self, value: bytes) -> bytes:
        """The whole element (header + value padded to even length) for an encoded ``value``."""
        if len(value) % 2:
            value += self._padding
        if self._long_length:
            return self._prefix + len(value).to_bytes(4, "little") + value
        if len(value) > _MAX_SHORT_LENGTH:
            raise ValueError(f"{self.keyword}: {len(value)} bytes do not fit a {self.vr} element")
        return self._prefix + len(value).to_bytes(2, "little") + value

    def text(self, value: str | None) -> bytes:
        """The element for a text value (ASCII: codes, numbers, dates); None gives an empty element."""
        return self.encode(b"" if value is None else value.encode("ascii"))

    def column(self, texts: Sequence[str | None], write: Sequence[bool] | None = None) -> list[bytes | None]:
        """The element for each text (None where ``write`` is False): one attribute across many items."""
        prefix, padding = self._prefix, self._padding
        values = [b"" if text is None else text.encode("ascii") for text in texts]
        values = [value + padding if len(value) % 2 else value for value in values]
        if values and max(map(len, values)) > (0xFFFFFFFF if self._long_length else _MAX_SHORT_LENGTH):
            raise ValueError(f"{self.keyword}: a value does not fit a {self.vr} element")
        size = 4 if self._long_length else 2
        if write is None:
            return [prefix + len(value).to_bytes(size, "little") + value for value in values]
        return [
            prefix + len(value).to_bytes(size, "little") + value if keep else None
            for value, keep in zip(values, write, strict=True)
        ]

    def sequence(self, items: Iterable[bytes]) -> bytes:
        """The element for a sequence of already encoded items (see :func:`encode_item_parts`)."""
        return self.encode(b"".join(items))


def encode_item_parts(elements: Sequence[bytes]) -> bytes:
    """One sequence item from encoded elements already in ascending tag order."""
    body = b"".join(elements)
    return _ITEM_HEADER.pack(_ITEM_GROUP, _ITEM_ELEMENT, len(body)) + body


def raw_sequence_element(key: ElementKey, items: Iterable[bytes]) -> RawDataElement:
    """A sequence element pydicom stores and writes as the given encoded items (decoded on access)."""
    value = b"".join(items)
    return RawDataElement(BaseTag(key.tag), "SQ", len(value), value, 0, False, True)
