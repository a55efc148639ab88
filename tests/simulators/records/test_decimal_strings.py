"""Decimal strings: the table-built rows are format_ds's text, value by value (exact .5 ties aside: numpy
rounds them to even, Python's round by their binary value)."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.records.decimal_strings import ds_rows, format_ds


@pytest.mark.parametrize("decimals", [0, 1, 3, 4])
def test_ds_rows_match_format_ds_value_by_value(decimals: int) -> None:
    rng = np.random.default_rng(decimals)
    values = rng.uniform(-2000.0, 2000.0, size=(50, 24)) * rng.choice([1e-3, 1.0, 1e3, 4e5], size=(50, 24))
    values[::3] = np.round(values[::3])  # whole numbers
    values[1, :4] = (-0.0, 0.0, -(10.0**-decimals) / 3, 10.0**-decimals)  # -0 and the smallest steps
    rows = ds_rows(values, decimals)
    assert len(rows) == 50
    for row_text, row in zip(rows, values, strict=True):
        texts = row_text.split("\\")
        assert texts == [format_ds(v, decimals) for v in row]
        assert all(len(t) <= 16 and "e" not in t for t in texts)


def test_ds_rows_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="decimal"):
        ds_rows([[1.0, float("nan")]], 3)
    with pytest.raises(ValueError, match="0 to 4 decimals"):
        ds_rows([[1.0]], 5)
    with pytest.raises(ValueError, match="2-D"):
        ds_rows([1.0, 2.0], 3)


def test_ds_rows_across_digit_groups() -> None:
    values = np.array(
        [
            [999.9996, 999.9994, 1000.0, -1000.5, 123456.789, -999999.9999],
            [1e8 + 0.25, -123456789.125, 1000000.0, 0.0006, -0.0004, 5.0],
        ]
    )
    expected = [[format_ds(v, 3) for v in row] for row in values]
    assert [row.split("\\") for row in ds_rows(values, 3)] == expected
    assert ds_rows(values, 3)[0].split("\\")[:3] == ["1000", "999.999", "1000"]


def test_ds_rows_of_an_empty_table() -> None:
    assert ds_rows(np.zeros((3, 0)), 3) == ["", "", ""]
