"""``rtsim console --scenario``: the scenario runner drives, the console shows it paced and its verdicts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tui_helpers import plain, until

from tui.app import make_console
from tui.scenario_play import scenario_console

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "library"


def test_interlock_scenario_plays_paced_and_shows_expectations(tmp_path) -> None:
    clinic, play = scenario_console(LIBRARY / "linac-interlock-mid-arc.toml", speed=60.0, work_dir=tmp_path)

    async def run() -> None:
        app = make_console(clinic, refresh_hz=10)
        app.scenario = play
        async with app.run_test(size=(150, 44)) as pilot:
            await until(pilot, lambda: clinic.snapshot("LINAC1").beam_on, "the scenario's beam on", 60)
            await pilot.pause(0.2)
            panel = plain(app.screen.query_one("#scenario-panel").content)
            assert "Scenario PLAYING" in panel
            assert panel.count("…") >= len(play.scenario.expectations) - 1  # pending while it plays
            await until(
                pilot,
                lambda: any(line.state == "passed" for line in play.lines()) and play.state == "running",
                "the InterlockRaised expectation passing live, before the scenario ends",
                60,
            )
            assert clinic.machines["LINAC1"].clock.factor == 60.0  # paced, not the runner's fast clock
            await until(pilot, lambda: play.state in ("passed", "failed", "error"), "the verdict", 120)
            await pilot.pause(0.2)
            panel = plain(app.screen.query_one("#scenario-panel").content)
            assert play.state == "passed", panel
            assert "Scenario PASSED" in panel
            assert panel.count("✓") == len(play.scenario.expectations)
            texts = [line.text for line in clinic.log.since(0) if line.machine_id == "LINAC1"]
            assert "INTERLOCK DOSE1" in texts

    asyncio.run(run())
