"""Where the test data live. Importable from any test (``pythonpath = tests``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The project's ``shared/`` folder: $RTSIM_SHARED, else beside the checkout (as in CI and sessions)."""
    env = os.environ.get("RTSIM_SHARED")
    if env:
        return Path(env)
    for candidate in (REPO_ROOT.parent / "shared", REPO_ROOT.parent.parent / "shared", Path("/work/shared")):
        if (candidate / "data" / "ihe-ro").is_dir():
            return candidate
    return REPO_ROOT.parent / "shared"


IHE_RO_DIR = shared_dir() / "data" / "ihe-ro"


def ihe_ro_plan_paths() -> list[Path]:
    """Every RT Plan in the IHE-RO data (ARTI and TPPC technique plans, the TDW-II plans), sorted."""
    plans = sorted(IHE_RO_DIR.glob("ARTI/Datasets/RTAdvanced/*/RTPlan*.dcm"))
    plans += sorted(IHE_RO_DIR.glob("TPPC/Datasets/TPPC/*/RTPlan*.dcm"))
    plans += sorted(IHE_RO_DIR.glob("TDW-II/Datasets/TDW/**/RTP*.dcm"))
    return plans
