"""SVG snapshots of the console: the clinic view and each machine view, from a frozen clinic.

The clinic is built by real engines in fast mode with a fixed seed; the trackers stop at a chosen
simulated time, so nothing depends on wall time. Review a changed snapshot by opening the .failed.svg
beside it; accept it with RTSIM_UPDATE_SNAPSHOTS=1.
"""

from __future__ import annotations

import asyncio

import pytest
from tui_helpers import compare_snapshot
from tui_replay import frozen_clinic

from tui.app import make_console
from tui.screens.machine import MachineScreen
from tui.views import GenericView, view_for

SIZE = (150, 44)


def shoot(clinic, *, machine: str | None = None, keys: tuple[str, ...] = ()) -> str:
    async def run() -> str:
        app = make_console(clinic, refresh_hz=0, start_clinic=False)
        async with app.run_test(size=SIZE) as pilot:
            if machine is not None:
                app.select_machine(machine)
                app.push_screen(MachineScreen(machine))
                await pilot.pause()
            app.refresh_screen()
            await pilot.pause()
            for key in keys:
                await pilot.press(key)
            # let every layout pass settle (the worklist table sizes its columns after its rows arrive)
            for _ in range(3):
                app.refresh_screen()
                await pilot.wait_for_scheduled_animations()
                await pilot.pause()
            return app.export_screenshot()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def clinic():
    return frozen_clinic()


def test_clinic_view_snapshot(clinic) -> None:
    compare_snapshot("clinic_view", shoot(clinic))


def test_linac_view_snapshot(clinic) -> None:
    compare_snapshot("linac_view", shoot(clinic, machine="LINAC1"))


def test_interlocked_linac_view_snapshot(clinic) -> None:
    compare_snapshot("linac_view_interlock", shoot(clinic, machine="LINAC2"))


def test_afterloader_view_snapshot(clinic) -> None:
    if "HDR1" not in clinic.machines:
        pytest.skip("no afterloader simulator in this tree yet (issue 4)")
    assert view_for("afterloader") is not GenericView
    compare_snapshot("afterloader_view", shoot(clinic, machine="HDR1"))


def test_help_screen_snapshot(clinic) -> None:
    compare_snapshot("help_screen", shoot(clinic, keys=("question_mark",)))
