"""Errors raised while loading machine model files."""

from __future__ import annotations


class ModelError(Exception):
    """A machine model file is malformed or incomplete. The message names the file and the key."""

    exit_code = 2

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}")
