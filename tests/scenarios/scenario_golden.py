"""Shared by the test_scenario_library_* files: run one bundled scenario, check it, diff its golden trace.

Regenerate the goldens after an intended change: ``RTSIM_UPDATE_GOLDEN=1 pytest tests/scenarios``
(then review the diff of ``tests/scenarios/golden/`` before committing).
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

import pytest

from scenarios.loader import library_paths, load_scenario
from scenarios.runner import run_scenario
from scenarios.trace import to_jsonl

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RTSIM_UPDATE_GOLDEN", "") not in ("", "0")
LIBRARY = library_paths()


def library(*prefixes: str) -> list[Path]:
    """The bundled scenarios whose names start with one of ``prefixes``."""
    return [p for p in LIBRARY if p.stem.startswith(prefixes)]


def check_against_golden(path: Path, tmp_path: Path) -> None:
    logging.getLogger("simulators.dicom.tdd").setLevel(logging.CRITICAL)
    scenario = load_scenario(path)
    result = run_scenario(scenario, work_dir=tmp_path)
    failed = [f"{r.key} {r.description}: {r.message}" for r in result.results if not r.passed]
    assert not failed, "\n".join(failed)
    text = to_jsonl(result.trace)
    assert "1.2.826." not in text, "UIDs leaked into the trace"
    assert str(tmp_path) not in text, "the run folder leaked into the trace"
    golden = GOLDEN_DIR / f"{scenario.name}.jsonl"
    if UPDATE or not golden.exists():
        golden.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{golden} did not exist; written now: review and commit it")
        return
    expected = golden.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(
            list(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now"))[:60]
        )
        pytest.fail(
            f"{scenario.name}: trace differs from {golden.name} (RTSIM_UPDATE_GOLDEN=1 to accept)\n{diff}"
        )
