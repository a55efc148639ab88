"""The machine state machine: the transition table and the console's beam-on rule."""

from __future__ import annotations

import pytest

from simulators.core.states import (
    FINAL_STATES,
    TRANSITIONS,
    IllegalTransitionError,
    MachineState,
    StateMachine,
    beam_on_refusal,
    check_transition,
)

S = MachineState


def test_every_state_has_a_row_and_is_reachable_from_standby() -> None:
    assert set(TRANSITIONS) == set(MachineState)
    seen, todo = {S.STANDBY}, [S.STANDBY]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(MachineState)


def test_final_states_only_go_back_to_standby() -> None:
    for state in FINAL_STATES:
        assert TRANSITIONS[state] == {S.STANDBY}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.STANDBY, S.BEAM_ON),  # no beam without a session
        (S.PREPARED, S.BEAM_ON),  # the axes first go to READY
        (S.INTERRUPTED, S.BEAM_ON),  # a resume goes through READY
        (S.BEAM_ON, S.COMPLETED),  # beam off first
        (S.COMPLETED, S.BEAM_ON),
        (S.TERMINATED, S.READY),
    ],
)
def test_illegal_transitions_raise(old: MachineState, new: MachineState) -> None:
    with pytest.raises(IllegalTransitionError, match=f"{old} -> {new}"):
        check_transition(old, new)


def test_state_machine_walks_a_normal_and_an_interrupted_session() -> None:
    machine = StateMachine()
    for new in (S.PREPARED, S.READY, S.BEAM_ON, S.BEAM_HOLD, S.BEAM_ON, S.READY, S.COMPLETED, S.STANDBY):
        machine.transition(new)
    assert machine.state is S.STANDBY
    for new in (
        S.PREPARED,
        S.READY,
        S.BEAM_ON,
        S.INTERRUPTED,
        S.READY,
        S.BEAM_ON,
        S.INTERRUPTED,
        S.TERMINATED,
    ):
        machine.transition(new)
    assert machine.state is S.TERMINATED
    with pytest.raises(IllegalTransitionError):
        machine.transition(S.BEAM_ON)
    assert machine.state is S.TERMINATED  # unchanged after a refused transition


def test_beam_on_refused_while_interlock_active_or_door_open() -> None:
    assert beam_on_refusal({}, door_open=False) is None
    assert beam_on_refusal({"DOS2": True, "BMAG": True}, door_open=False) == "interlock active: BMAG, DOS2"
    assert beam_on_refusal((), door_open=True) == "treatment room door open"
    assert beam_on_refusal(["DOOR"], door_open=True).startswith("interlock active")
