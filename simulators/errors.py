"""Errors rtsim reports to people: each names what is wrong (file, beam, control point, attribute)."""

from __future__ import annotations


class RtsimError(Exception):
    """Base class for errors shown to the user as a message, never a traceback."""

    exit_code = 2


class PlanReadError(RtsimError):
    """The plan file cannot be read or is not a usable RT Plan (truncated, corrupt, missing data)."""


class PlanRefusedError(RtsimError):
    """The machine refuses the plan, as a real console would. ``reasons`` lists every problem found."""

    exit_code = 3

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("plan refused:\n" + "\n".join(f"  - {r}" for r in self.reasons))
