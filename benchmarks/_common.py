"""Shared helpers for the benchmark scripts: where the repository and the shared test data are."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))


def shared_dir() -> Path:
    """The ``shared/`` folder: $RTSIM_SHARED, else beside the checkout (as tests/rtsim_testdata.py)."""
    env = os.environ.get("RTSIM_SHARED")
    if env:
        return Path(env)
    for candidate in (REPO_ROOT.parent / "shared", REPO_ROOT.parent.parent / "shared", Path("/work/shared")):
        if (candidate / "data" / "ihe-ro").is_dir():
            return candidate
    return REPO_ROOT.parent / "shared"


IHE_RO_DIR = shared_dir() / "data" / "ihe-ro"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank; fine for reporting)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)
