"""Helpers for the console tests: plain text of a widget, polling the app for a condition."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

SNAPSHOT_DIR = Path(__file__).with_name("snapshots")
UPDATE_ENV = "RTSIM_UPDATE_SNAPSHOTS"


def plain(renderable) -> str:
    """What a Rich renderable shows, as plain text."""
    console = Console(width=140, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


async def until(pilot, condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Let the app run until ``condition()`` holds (bounded; fails naming ``what``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for: {what}")
        await pilot.pause(0.05)


def compare_snapshot(name: str, svg: str) -> None:
    """Compare an exported SVG with ``snapshots/<name>.svg`` (RTSIM_UPDATE_SNAPSHOTS=1 rewrites it)."""
    path = SNAPSHOT_DIR / f"{name}.svg"
    if os.environ.get(UPDATE_ENV) == "1":
        path.write_text(svg, encoding="utf-8")
        return
    if not path.exists():
        raise AssertionError(
            f"no stored snapshot {path}; run with {UPDATE_ENV}=1 to create it, then review it"
        )
    expected = path.read_text(encoding="utf-8")
    if svg != expected:
        failed = path.with_suffix(".failed.svg")
        failed.write_text(svg, encoding="utf-8")
        raise AssertionError(f"console snapshot {name} differs from {path}; this run's screen is in {failed}")
