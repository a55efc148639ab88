"""Fixtures shared by the whole test tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from rtsim_testdata import IHE_RO_DIR, ihe_ro_plan_paths


@pytest.fixture(scope="session")
def ihe_ro_dir() -> Path:
    """The IHE-RO test datasets (``shared/data/ihe-ro``)."""
    if not IHE_RO_DIR.is_dir():
        pytest.fail(f"IHE-RO test data not found at {IHE_RO_DIR}; set RTSIM_SHARED to the shared/ folder")
    return IHE_RO_DIR


@pytest.fixture(scope="session")
def rtplan_path() -> Path:
    """pydicom's example RT Plan (exact name: globbing tries to download offline)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("rtplan.dcm"))


@pytest.fixture(scope="session")
def ihe_ro_plans() -> list[Path]:
    """Every RT Plan file in the IHE-RO data (28 ARTI/TPPC plans, the TDW-II photon and ion plans)."""
    if not IHE_RO_DIR.is_dir():
        pytest.fail(f"IHE-RO test data not found at {IHE_RO_DIR}; set RTSIM_SHARED to the shared/ folder")
    return ihe_ro_plan_paths()
