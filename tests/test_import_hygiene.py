"""The dependency direction of DEVELOPERS.md, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = {
    "machine_models": ["simpy", "pydicom", "pynetdicom", "textual", "simulators", "scenarios", "tui"],
    "machine_models.kinematics": ["simpy", "pydicom", "pynetdicom", "textual"],
    "simulators.core.engine": ["pydicom", "pynetdicom", "textual", "tui"],
    "simulators.devices.linac": ["pynetdicom", "textual", "tui"],
    "simulators.devices.session": ["pynetdicom", "textual", "tui"],
    "simulators.records.beams_record": ["pynetdicom", "textual", "tui"],
    "simulators.cli.deliver": ["pynetdicom", "textual", "tui"],
}


@pytest.mark.parametrize(("module", "forbidden"), sorted(FORBIDDEN.items()))
def test_module_does_not_import(module: str, forbidden: list[str]) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
