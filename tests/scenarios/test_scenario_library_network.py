"""Bundled network, TMS and device-crash scenarios pass on the embedded TMS and match their golden traces.

Regenerate the goldens after an intended change: ``RTSIM_UPDATE_GOLDEN=1 pytest tests/scenarios``
(then review the diff of ``tests/scenarios/golden/`` before committing).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_golden import check_against_golden, library

PATHS = library("network-", "tms-", "device-")


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_network_scenario_passes_and_matches_its_golden_trace(path: Path, tmp_path: Path) -> None:
    check_against_golden(path, tmp_path)
