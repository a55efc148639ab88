"""Errors of the scenario loader and runner: every message names the file and the key."""

from __future__ import annotations

from simulators.errors import RtsimError


class ScenarioError(RtsimError):
    """A scenario file cannot be used: ``source`` (the file), ``key`` (dotted path), ``problem``."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")
