"""Bundled afterloader and multi-device scenarios pass against the embedded TMS and match their golden traces.

Regenerate the goldens after an intended change: ``RTSIM_UPDATE_GOLDEN=1 pytest tests/scenarios``
(then review the diff of ``tests/scenarios/golden/`` before committing).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_golden import check_against_golden, library

PATHS = library("afterloader-", "clinic-")


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_other_scenario_passes_and_matches_its_golden_trace(path: Path, tmp_path: Path) -> None:
    check_against_golden(path, tmp_path)


def test_the_library_has_at_least_twelve_documented_scenarios_all_tested() -> None:
    from scenario_golden import LIBRARY

    from scenarios.loader import load_scenario

    covered = library("linac-", "network-", "tms-", "device-", "afterloader-", "clinic-")
    assert covered == LIBRARY, (
        "a library scenario with a new prefix: add it to a test_scenario_library_* file"
    )
    assert len(LIBRARY) >= 12
    for path in LIBRARY:
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert len(scenario.tests) > 40, f"{path.name}: say what it tests"
        assert len(scenario.why) > 40, f"{path.name}: say why it matters clinically"
        assert scenario.expectations, f"{path.name}: no expectations"
