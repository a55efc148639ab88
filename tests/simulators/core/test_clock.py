"""Fast and paced clocks; the paced clock is tested with an injected wall clock, so nothing sleeps."""

from __future__ import annotations

import threading
from datetime import datetime

import numpy as np
import pytest
import simpy

from simulators.core.clock import FastClock, PacedClock
from simulators.core.engine import DeliveryEngine
from simulators.core.program import DeliveryProgram, ProgramUnit, Segment, SegmentKind


class FakeWall:
    """A wall clock that only moves when the clock waits; ``on_block`` runs on an unbounded wait."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float | None] = []
        self.on_block = None

    def time(self) -> float:
        return self.now

    def wait(self, timeout_s: float | None) -> None:
        self.waits.append(timeout_s)
        if timeout_s is None:
            assert self.on_block is not None, "paced clock blocked with nobody to wake it"
            self.on_block()
        else:
            self.now += timeout_s


def ticker(env: simpy.Environment, log: list[float], wall: FakeWall, n: int = 10):
    for _ in range(n):
        yield env.timeout(1.0)
        log.append((env.now, wall.now - 100.0))


def run_paced(clock: PacedClock, wall: FakeWall, extra=None, n: int = 10) -> list[tuple[float, float]]:
    env = clock.make_environment()
    log: list[tuple[float, float]] = []
    proc = env.process(ticker(env, log, wall, n))
    if extra is not None:
        env.process(extra(env))
    clock.run(env, proc)
    return log


def test_fast_clock_runs_without_waiting() -> None:
    clock = FastClock()
    env = clock.make_environment()
    log: list[tuple[float, float]] = []
    wall = FakeWall()
    clock.run(env, env.process(ticker(env, log, wall)))
    assert [t for t, _ in log] == [float(i) for i in range(1, 11)]


@pytest.mark.parametrize("factor", [0.5, 1.0, 4.0, 60.0])
def test_paced_clock_keeps_sim_time_at_factor_times_wall_time(factor: float) -> None:
    wall = FakeWall()
    log = run_paced(PacedClock(factor, time_fn=wall.time, wait_fn=wall.wait), wall)
    for sim_s, wall_s in log:
        assert wall_s == pytest.approx(sim_s / factor)


def test_factor_change_at_run_time() -> None:
    wall = FakeWall()
    clock = PacedClock(1.0, time_fn=wall.time, wait_fn=wall.wait)

    def speed_up(env: simpy.Environment):
        yield env.timeout(4.0)
        clock.set_factor(4.0)

    log = dict(run_paced(clock, wall, speed_up))
    assert log[4.0] == pytest.approx(4.0)
    assert log[10.0] == pytest.approx(4.0 + 6.0 / 4.0)


def test_pause_and_resume_stop_simulated_time() -> None:
    wall = FakeWall()
    clock = PacedClock(2.0, time_fn=wall.time, wait_fn=wall.wait)

    def unpause_later() -> None:  # what another thread would do after 30 s of wall time
        wall.now += 30.0
        clock.resume()

    wall.on_block = unpause_later

    def pause_at_3(env: simpy.Environment):
        yield env.timeout(3.0)
        clock.pause()

    log = dict(run_paced(clock, wall, pause_at_3))
    assert clock.paused is False
    assert log[2.0] == pytest.approx(1.0)
    assert log[4.0] == pytest.approx(1.5 + 30.0 + 0.5)
    assert log[10.0] == pytest.approx(1.5 + 30.0 + 3.5)


def test_behind_schedule_catches_up_without_error() -> None:
    wall = FakeWall()
    clock = PacedClock(1.0, time_fn=wall.time, wait_fn=wall.wait)

    def slow_cpu(env: simpy.Environment):
        yield env.timeout(2.5)
        wall.now += 5.0  # a 5 s stall of the sim thread

    log = dict(run_paced(clock, wall, slow_cpu))
    # late events run at once until simulated time has caught up with factor x wall time again
    assert [log[t] for t in (3.0, 4.0, 7.0, 8.0, 10.0)] == pytest.approx([7.5, 7.5, 7.5, 8.0, 10.0])
    assert clock.lag_s == pytest.approx(5.0)  # the stalled process's own end event, due at 2.5 s


def test_invalid_factor_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        PacedClock(0.0)
    with pytest.raises(ValueError, match="positive"):
        PacedClock(1.0).set_factor(float("nan"))


def _program() -> DeliveryProgram:
    unit = ProgramUnit(
        number=1,
        name="Arc",
        meterset_unit="MU",
        specified_meterset=200.0,
        cp_plan_indices=np.arange(3),
        cp_meterset=np.array([0.0, 100.0, 200.0]),
        cp_positions={"gantry_deg": np.array([180.0, 0.0, 180.0])},
        segments=(
            Segment(SegmentKind.SETUP, 0, 0, 20.0, 0.0, 0.0, "gantry"),
            Segment(SegmentKind.BEAM, 0, 1, 30.0, 100.0, 200.0, "gantry"),
            Segment(SegmentKind.BEAM, 1, 2, 30.0, 100.0, 200.0, "gantry"),
        ),
    )
    return DeliveryProgram("TB1", "linac", (unit,), {"gantry_deg": 0.1})


def test_engine_on_paced_clock_matches_fast_clock_and_takes_total_over_factor() -> None:
    wall = FakeWall()
    start = datetime(2024, 1, 1)
    paced = DeliveryEngine(
        _program(), session_start=start, seed=3, clock=PacedClock(8.0, time_fn=wall.time, wait_fn=wall.wait)
    )
    paced.schedule_at(45.0, lambda: paced.interlock("DS12"))
    fast = DeliveryEngine(_program(), session_start=start, seed=3)
    fast.schedule_at(45.0, lambda: fast.interlock("DS12"))
    a, b = paced.run(), fast.run()
    assert [e.to_dict() for e in a.events] == [e.to_dict() for e in b.events]
    assert a.units[0].delivered_meterset == pytest.approx(250.0 / 3.0)
    assert wall.now - 100.0 == pytest.approx(45.0 / 8.0, abs=0.1 / 8.0)  # at most one pump tick after


def test_paced_clock_with_real_time_and_a_fast_factor() -> None:
    clock = PacedClock(1e6)  # 80 s of simulated time in ~80 us of wall time: no test sleep
    result = DeliveryEngine(_program(), session_start=datetime(2024, 1, 1), clock=clock).run()
    assert result.completed
    assert result.end_time_s == pytest.approx(80.0)


def test_pause_from_another_thread_blocks_until_resume() -> None:
    clock = PacedClock(1e6)
    engine = DeliveryEngine(_program(), session_start=datetime(2024, 1, 1), clock=clock)
    clock.pause()
    done = threading.Event()
    runner = threading.Thread(target=lambda: (engine.run(), done.set()))
    runner.start()
    assert not done.wait(0.05)  # paused: the session cannot end
    clock.resume()
    assert done.wait(10.0)
    runner.join(10.0)
    assert engine.result is not None
    assert engine.result.completed
