"""Numbers as DICOM Decimal Strings (DS): one at a time, or whole tables of them at once.

Records hold ~100 000 decimal strings (leaf positions at every control point), so :func:`ds_rows` builds
their text with numpy from digit tables instead of formatting number by number (~3x faster), and gives
exactly the text :func:`format_ds` gives for each value: rounded to the stated decimals, no trailing
zeros, no ``-0``.
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.valuerep import format_number_as_ds

MAX_TABLE_DECIMALS = 4
_MAX_MAGNITUDE = 1e9  # 9 integer digits + "." + 4 decimals + sign: always within DS's 16 characters
_MINUS, _POINT, _BACKSLASH, _ZERO = 45, 46, 92, 48

# The three digits of 0..999, and which of them a number whose highest group this is shows.
_GROUP_DIGITS = np.array([[_ZERO + x // 100 % 10, _ZERO + x // 10 % 10, _ZERO + x % 10] for x in range(1000)])
_GROUP_DIGITS = _GROUP_DIGITS.astype(np.uint8)
_TOP_GROUP_SHOWN = np.array([[x >= 100, x >= 10, True] for x in range(1000)], dtype=bool)


def _fraction_tables(decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """ "." and the digits of 0 .. 10^decimals - 1, and which of them show (no trailing zeros)."""
    unit = 10**decimals
    powers = [10 ** (decimals - 1 - j) for j in range(decimals)]
    digits = np.array([[_POINT] + [_ZERO + f // p % 10 for p in powers] for f in range(unit)], np.uint8)
    shown = np.array([[f != 0] + [f % (p * 10) != 0 for p in powers] for f in range(unit)], dtype=bool)
    return digits, shown


_FRACTIONS = {decimals: _fraction_tables(decimals) for decimals in range(1, MAX_TABLE_DECIMALS + 1)}


def format_ds(value: float, decimals: int) -> str:
    """``value`` rounded to ``decimals`` as a DICOM DS string of at most 16 characters (no ``-0``)."""
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value!r} as a decimal string")
    rounded = round(float(value), decimals)
    if rounded == 0.0:
        return "0"
    text = f"{rounded:.{decimals}f}"
    if decimals > 0:  # drop trailing zeros of the fraction only ("1740" stays "1740")
        text = text.rstrip("0").rstrip(".")
    return text if len(text) <= 16 else format_number_as_ds(rounded)


def ds_rows(values: object, decimals: int) -> list[str]:
    """Each row of a 2-D array as one backslash-separated DS value, each number as :func:`format_ds`
    writes it (``decimals`` 0 to 4, magnitudes below 1e9)."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"ds_rows needs a 2-D array, not shape {array.shape}")
    if not 0 <= decimals <= MAX_TABLE_DECIMALS:
        raise ValueError(f"ds_rows writes 0 to {MAX_TABLE_DECIMALS} decimals, not {decimals}")
    if not np.all(np.isfinite(array)) or np.any(np.abs(array) >= _MAX_MAGNITUDE):
        raise ValueError(f"cannot write {array!r} as decimal strings")
    rows, columns = array.shape
    if array.size == 0:
        return [""] * rows
    scaled = np.rint(array * 10.0**decimals)  # the same integer np.round(array, decimals) scales to
    magnitude = np.abs(scaled).astype(np.int64)
    whole, fraction = np.divmod(magnitude, 10**decimals)
    chars = [np.full((rows, columns, 1), _MINUS, np.uint8)]
    shown = [(scaled < 0)[..., None]]  # -0 rounds to 0: no sign
    groups = max(1, (len(str(int(whole.max()))) + 2) // 3)
    for group in reversed(range(groups)):
        value = whole // 1000**group % 1000
        chars.append(_GROUP_DIGITS[value])
        if groups == 1:
            shown.append(_TOP_GROUP_SHOWN[value])
            continue
        higher = (whole >= 1000 ** (group + 1))[..., None]  # a higher group leads: show every digit
        leading = (whole >= 1000**group) | (group == 0)  # this group leads (the units group always shows)
        shown.append(np.where(higher, True, _TOP_GROUP_SHOWN[value] & leading[..., None]))
    if decimals:
        fraction_digits, fraction_shown = _FRACTIONS[decimals]
        chars.append(fraction_digits[fraction])
        shown.append(fraction_shown[fraction])
    chars.append(np.full((rows, columns, 1), _BACKSLASH, np.uint8))
    shown.append(np.ones((rows, columns, 1), dtype=bool))
    mask = np.concatenate(shown, axis=2)
    text = np.concatenate(chars, axis=2)[mask].tobytes().decode("ascii")
    ends = np.cumsum(mask.reshape(rows, -1).sum(axis=1)).tolist()
    out = []
    start = 0
    for end in ends:
        out.append(text[start : end - 1])  # without the row's last backslash
        start = end
    return out
