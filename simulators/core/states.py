"""The console-like machine state machine shared by every device kind.

The engine only makes legal transitions; an illegal one is a bug and raises
:class:`IllegalTransitionError`. :func:`beam_on_refusal` holds the console rule for beam on.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum


class MachineState(StrEnum):
    """What the treatment console shows.

    STANDBY: idle, no session. PREPARED: session loaded, nothing moved yet. READY: axes may move, beam
    off, beam on allowed. BEAM_ON: radiation on. BEAM_HOLD: beam paused inside a unit (automatic hold,
    step-and-shoot leaf move, fault delay), resumes by itself. INTERRUPTED: beam off by an interlock or
    the operator; needs a resume or ends the session. TERMINATED: session ended before its end.
    COMPLETED: every unit delivered.
    """

    STANDBY = "STANDBY"
    PREPARED = "PREPARED"
    READY = "READY"
    BEAM_ON = "BEAM_ON"
    BEAM_HOLD = "BEAM_HOLD"
    INTERRUPTED = "INTERRUPTED"
    TERMINATED = "TERMINATED"
    COMPLETED = "COMPLETED"


S = MachineState

TRANSITIONS: dict[MachineState, frozenset[MachineState]] = {
    S.STANDBY: frozenset({S.PREPARED, S.TERMINATED}),
    S.PREPARED: frozenset({S.READY, S.INTERRUPTED, S.TERMINATED, S.COMPLETED}),
    S.READY: frozenset({S.BEAM_ON, S.BEAM_HOLD, S.INTERRUPTED, S.TERMINATED, S.COMPLETED}),
    S.BEAM_ON: frozenset({S.READY, S.BEAM_HOLD, S.INTERRUPTED, S.TERMINATED}),
    S.BEAM_HOLD: frozenset({S.READY, S.BEAM_ON, S.INTERRUPTED, S.TERMINATED}),
    S.INTERRUPTED: frozenset({S.READY, S.TERMINATED}),
    S.TERMINATED: frozenset({S.STANDBY}),
    S.COMPLETED: frozenset({S.STANDBY}),
}

FINAL_STATES = frozenset({S.TERMINATED, S.COMPLETED})


class IllegalTransitionError(RuntimeError):
    """A state change the table does not allow: a bug in the engine, not a user error."""


def check_transition(old: MachineState, new: MachineState) -> None:
    """Raise :class:`IllegalTransitionError` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old]))
        raise IllegalTransitionError(f"illegal machine state transition {old} -> {new} (allowed: {allowed})")


class StateMachine:
    """Holds the current state and enforces the transition table."""

    def __init__(self, initial: MachineState = MachineState.STANDBY) -> None:
        self._state = initial

    @property
    def state(self) -> MachineState:
        return self._state

    def transition(self, new: MachineState) -> MachineState:
        """Move to ``new`` and return the old state (raises on an illegal transition)."""
        old = self._state
        check_transition(old, new)
        self._state = new
        return old


def beam_on_refusal(active_interlocks: Collection[str], door_open: bool) -> str | None:
    """The reason beam on is refused now, or None when it is allowed (console rule)."""
    if active_interlocks:
        return "interlock active: " + ", ".join(sorted(active_interlocks))
    if door_open:
        return "treatment room door open"
    return None
