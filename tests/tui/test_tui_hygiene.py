"""Textual is imported only by the console's app, screens, views and widgets; never by its backend."""

from __future__ import annotations

import subprocess
import sys

HEADLESS = [
    "tui.clinic",
    "tui.tracker",
    "tui.snapshot",
    "tui.render",
    "tui.faults",
    "tui.local",
    "tui.scenario_play",
    "simulators.cli.main",
    "simulators.cli.console",
    "simulators.cli.device",
]


def test_backend_modules_do_not_import_textual() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {HEADLESS!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'textual' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"{out.stdout.strip()} imports textual"


def test_core_does_not_import_the_console() -> None:
    code = (
        "import sys, simulators.core.engine, simulators.devices.session, scenarios.runner; "
        "print(sorted(m for m in sys.modules if m == 'tui' or m.startswith('tui.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
