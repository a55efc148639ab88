"""C-FIND matching and return-key building (PS3.4 C.2.2.2), shared by the UPS worklist and the OST.

Supported: universal matching (empty key), single value matching, list-of-UID matching, wildcard
matching (``*`` and ``?``) for string VRs, range matching for DA/TM/DT (``a-b``, ``a-``, ``-b``, partial
precision is widened to the whole period), sequence matching (an item's keys must all match one item of
the record's sequence), numeric equality for IS/DS/US/UL/SS/SL/FL/FD. PN matching is case-insensitive.
Time zone offsets in DT values are ignored. An invalid key (for example a date that is not a date) raises
:class:`MatchKeyError`, which the SCPs answer with 0xA900.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from io import BytesIO

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

_STRING_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR", "AS"})
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"})
_DATE_VRS = frozenset({"DA", "TM", "DT"})

# digits of each component and its (minimum, maximum) for widening partial values
_DT_PARTS = (
    (4, "0000", "9999"),
    (2, "01", "12"),
    (2, "01", "31"),
    (2, "00", "23"),
    (2, "00", "59"),
    (2, "00", "59"),
)
_DA_PARTS = _DT_PARTS[:3]
_TM_PARTS = _DT_PARTS[3:]
_DT_VALUE = r"\d{4}(?:\d{2}){0,5}(?:\.\d{1,6})?(?:[+-]\d{4})?"
_DA_VALUE = r"\d{4}(?:\d{2}){0,2}"
_TM_VALUE = r"\d{2}(?::?\d{2}){0,2}(?:\.\d{1,6})?"
_VALUE_PATTERNS = {"DT": _DT_VALUE, "DA": _DA_VALUE, "TM": _TM_VALUE}
_PARTS = {"DT": _DT_PARTS, "DA": _DA_PARTS, "TM": _TM_PARTS}


class MatchKeyError(ValueError):
    """A key in the identifier cannot be used for matching (names the attribute and the value)."""


def _is_empty(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return len(elem.value) == 0
    value = elem.value
    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        return len(value) == 0
    if isinstance(value, MultiValue):
        return len(value) == 0
    return False


def _values(elem: DataElement) -> list:
    value = elem.value
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [v for v in value if v is not None and v != ""]
    if value == "":
        return []
    return [value]


def _describe(elem: DataElement) -> str:
    return f"{elem.keyword or 'attribute'} {elem.tag}"


# --- date/time ranges ---------------------------------------------------------------------------
def _bound(text: str, vr: str, *, upper: bool) -> str:
    """Widen a (partial) DA/TM/DT value to a fixed-width comparable string."""
    text = re.sub(r"[+-]\d{4}$", "", text) if vr == "DT" else text
    text = text.replace(":", "") if vr == "TM" else text
    main, _, fraction = text.partition(".")
    out = []
    pos = 0
    for width, low, high in _PARTS[vr]:
        piece = main[pos : pos + width]
        pos += width
        out.append(piece if len(piece) == width else (high if upper else low))
    frac = fraction.ljust(6, "9" if upper else "0") if fraction else ("999999" if upper else "000000")
    return "".join(out) + "." + frac


def _interval(text: str, vr: str, elem: DataElement) -> tuple[str, str]:
    """Query interval of a DA/TM/DT key: single value or range (either end may be open)."""
    text = text.strip()
    pattern = _VALUE_PATTERNS[vr]
    # a range is tried first: "2014-2015" is a range of years, not 2014 with offset -2015
    match = re.fullmatch(rf"({pattern})?-({pattern})?", text)
    if match and (match.group(1) or match.group(2)):
        low = _bound(match.group(1), vr, upper=False) if match.group(1) else "0"
        high = _bound(match.group(2), vr, upper=True) if match.group(2) else "9"
        return low, high
    if re.fullmatch(pattern, text):
        return _bound(text, vr, upper=False), _bound(text, vr, upper=True)
    raise MatchKeyError(f"{_describe(elem)}: {text!r} is not a valid {vr} value or range")


def _match_dates(query: DataElement, record: DataElement) -> bool:
    low, high = _interval(str(query.value), query.VR, query)
    for value in _values(record):
        text = str(value).strip()
        if not re.fullmatch(_VALUE_PATTERNS[record.VR], text):
            continue
        rec_low, rec_high = _bound(text, record.VR, upper=False), _bound(text, record.VR, upper=True)
        if rec_low <= high and rec_high >= low:
            return True
    return False


# --- strings, UIDs, numbers ---------------------------------------------------------------------
def _wildcard_regex(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _match_strings(query: DataElement, record: DataElement) -> bool:
    ignore_case = query.VR == "PN"
    record_values = [str(v).strip() for v in _values(record)]
    for key in _values(query):
        key_text = str(key).strip()
        if key_text in ("*", ""):
            return True
        if "*" in key_text or "?" in key_text:
            regex = _wildcard_regex(key_text, ignore_case=ignore_case)
            if any(regex.fullmatch(value) for value in record_values):
                return True
        elif ignore_case:
            if any(value.casefold() == key_text.casefold() for value in record_values):
                return True
        elif key_text in record_values:
            return True
    return False


def _match_numbers(query: DataElement, record: DataElement) -> bool:
    try:
        keys = [float(v) for v in _values(query)]
    except (TypeError, ValueError) as error:
        raise MatchKeyError(f"{_describe(query)}: {query.value!r} is not a number") from error
    for value in _values(record):
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if any(math.isclose(number, key, rel_tol=1e-9, abs_tol=1e-9) for key in keys):
            return True
    return False


def _match_uids(query: DataElement, record: DataElement) -> bool:
    keys = {str(v).strip() for v in _values(query)}
    return any(str(v).strip() in keys for v in _values(record))


def _match_sequence(query: DataElement, record: DataElement | None, skip: frozenset[int]) -> bool:
    if len(query.value) == 0:
        return True
    item_query = query.value[0]
    if all(_is_universal(e) for e in item_query if e.tag not in skip):
        return True
    if record is None or record.VR != "SQ":
        return False
    return any(match_dataset(item, item_query, skip=skip) for item in record.value)


def _is_universal(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return len(elem.value) == 0 or all(_is_universal(e) for item in elem.value for e in item)
    if _is_empty(elem):
        return True
    return elem.VR in _STRING_VRS and all(str(v).strip() == "*" for v in _values(elem))


def match_element(query: DataElement, record: DataElement | None, skip: frozenset[int] = frozenset()) -> bool:
    """True if the record's element satisfies the query key (universal keys always match)."""
    if query.VR == "SQ":
        return _match_sequence(query, record, skip)
    if _is_universal(query):
        return True
    if record is None or _is_empty(record):
        return False
    if query.VR in _DATE_VRS and record.VR in _DATE_VRS:
        return _match_dates(query, record)
    if query.VR == "UI":
        return _match_uids(query, record)
    if query.VR in _NUMERIC_VRS:
        return _match_numbers(query, record)
    if query.VR in _STRING_VRS:
        return _match_strings(query, record)
    return True  # binary and other VRs are return keys only


def match_dataset(record: Dataset, identifier: Dataset, *, skip: Iterable[int] = ()) -> bool:
    """True if ``record`` matches every key of ``identifier`` (tags in ``skip`` are ignored)."""
    skip_set = frozenset(int(t) for t in skip)
    for elem in identifier:
        if elem.tag in skip_set or elem.tag.group in (0x0000, 0x0002) or elem.tag == 0x00080005:
            continue
        if not match_element(elem, record.get(elem.tag), skip_set):
            return False
    return True


def build_response(record: Dataset, identifier: Dataset, *, never_return: Iterable[int] = ()) -> Dataset:
    """The C-FIND response identifier: every key asked for, valued from the record (empty if absent).

    A sequence key with zero items, or one empty item, returns the record's whole sequence; a
    sequence key whose item names keys returns each record item reduced to those keys (recursively).
    Tags in ``never_return`` (the Transaction UID) are never copied, even if asked for.
    """
    blocked = frozenset(int(t) for t in never_return)
    response = Dataset()
    for elem in identifier:
        if elem.tag in blocked or elem.tag.group in (0x0000, 0x0002):
            continue
        source = record.get(elem.tag)
        if source is None:
            response.add_new(elem.tag, elem.VR, Sequence() if elem.VR == "SQ" else None)
            continue
        if elem.VR == "SQ" and source.VR == "SQ":
            item_keys = elem.value[0] if len(elem.value) else None
            if item_keys is None or len(item_keys) == 0:
                response.add_new(elem.tag, "SQ", Sequence([_strip(item, blocked) for item in source.value]))
            else:
                items = [build_response(item, item_keys, never_return=blocked) for item in source.value]
                response.add_new(elem.tag, "SQ", Sequence(items))
        else:
            response.add(_copy_element(source))
    return response


def _copy_element(elem: DataElement) -> DataElement:
    value = elem.value
    if isinstance(value, MultiValue):
        value = list(value)
    return DataElement(elem.tag, elem.VR, value)


def _strip(item: Dataset, blocked: frozenset[int]) -> Dataset:
    """A deep copy of ``item`` without the blocked tags."""
    out = Dataset()
    for elem in item:
        if elem.tag in blocked:
            continue
        if elem.VR == "SQ":
            out.add_new(elem.tag, "SQ", Sequence([_strip(i, blocked) for i in elem.value]))
        else:
            out.add(_copy_element(elem))
    return out


def strip_tags(dataset: Dataset, blocked: Iterable[int]) -> Dataset:
    """A deep copy of ``dataset`` without the blocked tags at any depth (e.g. the Transaction UID)."""
    return _strip(dataset, frozenset(int(t) for t in blocked))


def validate_keys(identifier: Dataset) -> None:
    """Raise :class:`MatchKeyError` for a date/time or numeric key that cannot be matched (whether or not
    a record would have been compared with it)."""
    for elem in identifier:
        if elem.tag.group in (0x0000, 0x0002) or _is_universal(elem):
            continue
        if elem.VR == "SQ":
            if len(elem.value):
                validate_keys(elem.value[0])
        elif elem.VR in _DATE_VRS:
            _interval(str(elem.value), elem.VR, elem)
        elif elem.VR in _NUMERIC_VRS:
            try:
                [float(v) for v in _values(elem)]
            except (TypeError, ValueError) as error:
                raise MatchKeyError(f"{_describe(elem)}: {elem.value!r} is not a number") from error


def single_value_key(identifier: Dataset, tag: int) -> str | None:
    """The value of a single-valued, case-sensitive string key without wildcards (None otherwise): a
    record matches it exactly when its own stripped value equals it."""
    elem = identifier.get(tag)
    if elem is None or elem.VR not in _STRING_VRS or elem.VR == "PN":
        return None
    values = _values(elem)
    if len(values) != 1:
        return None
    text = str(values[0]).strip()
    return text if text and "*" not in text and "?" not in text else None


def query_shape(identifier: Dataset) -> tuple:
    """What :func:`build_response` depends on in an identifier: its keys, their VRs and the keys of its
    sequence items (not the values to match)."""
    shape = []
    for elem in identifier:
        if elem.VR == "SQ":
            item = elem.value[0] if len(elem.value) else None
            shape.append((int(elem.tag), "SQ", query_shape(item) if item is not None and len(item) else None))
        else:
            shape.append((int(elem.tag), elem.VR))
    return tuple(shape)


def pre_encoded(dataset: Dataset, is_implicit_vr: bool, is_little_endian: bool) -> Dataset:
    """``dataset`` encoded once and read back as raw elements: written again in the same encoding, it
    is copied byte for byte instead of encoded value by value (~0.2 ms instead of ~0.8 for a worklist
    item)."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = is_implicit_vr
    fp.is_little_endian = is_little_endian
    write_dataset(fp, dataset)
    return read_dataset(BytesIO(fp.getvalue()), is_implicit_vr, is_little_endian)
