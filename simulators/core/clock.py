"""Clocks that drive the SimPy environment: fast (as fast as the CPU allows) or paced to wall time.

Both run the environment on the calling thread until an event is processed. :class:`PacedClock` keeps
simulated time at ``factor`` x wall time, like ``simpy.rt.RealtimeEnvironment``, but it never raises when
behind, its factor can change while it runs, it can pause, and it waits on a wake-able event instead of
``time.sleep`` so pause/resume/factor changes from another thread act at once. Its time and wait
functions are injectable, so tests never sleep.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import simpy


class Clock(Protocol):
    """What the engine needs from a clock."""

    command_poll_s: float

    def make_environment(self) -> simpy.Environment: ...

    def run(self, env: simpy.Environment, until: simpy.Event) -> None: ...

    def wake(self) -> None: ...


class FastClock:
    """Simulated time runs as fast as possible (tests, batch, TMS load tests)."""

    def __init__(self, command_poll_s: float = 0.1) -> None:
        self.command_poll_s = command_poll_s

    def make_environment(self) -> simpy.Environment:
        return simpy.Environment()

    def run(self, env: simpy.Environment, until: simpy.Event) -> None:
        env.run(until=until)

    def wake(self) -> None:
        """Nothing to wake: the fast clock never waits."""


class PacedClock:
    """Simulated time kept at ``factor`` x wall time (training, demos).

    ``time_fn`` returns wall seconds (monotonic); ``wait_fn(timeout_s)`` blocks up to ``timeout_s`` (None:
    until woken). By default it waits on an internal ``threading.Event`` that :meth:`wake`,
    :meth:`set_factor`, :meth:`pause` and :meth:`resume` set. ``lag_s`` is the largest delay seen between
    an event's due wall time and its processing.
    """

    def __init__(
        self,
        factor: float = 1.0,
        *,
        time_fn: Callable[[], float] = time.monotonic,
        wait_fn: Callable[[float | None], None] | None = None,
        command_poll_s: float = 0.1,
    ) -> None:
        self._check_factor(factor)
        self._factor = factor
        self._time_fn = time_fn
        self._wake_event = threading.Event()
        self._wait_fn = wait_fn or self._default_wait
        self._lock = threading.Lock()
        self._paused = False
        self._anchor_wall = 0.0
        self._anchor_sim = 0.0
        self._env: simpy.Environment | None = None
        self.command_poll_s = command_poll_s
        self.lag_s = 0.0

    @staticmethod
    def _check_factor(factor: float) -> None:
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"clock factor must be a positive number, got {factor!r}")

    def _default_wait(self, timeout_s: float | None) -> None:
        self._wake_event.wait(timeout_s)
        self._wake_event.clear()

    @property
    def factor(self) -> float:
        return self._factor

    @property
    def paused(self) -> bool:
        return self._paused

    def make_environment(self) -> simpy.Environment:
        return simpy.Environment()

    def sim_now(self) -> float:
        """Best estimate of the current simulated time (between events), for displays."""
        with self._lock:
            return self._sim_now_locked()

    def _sim_now_locked(self) -> float:
        if self._env is None:
            return self._anchor_sim
        if self._paused:
            return max(self._anchor_sim, self._env.now)
        estimate = self._anchor_sim + (self._time_fn() - self._anchor_wall) * self._factor
        return min(max(estimate, self._env.now), self._env.peek())

    def _reanchor_locked(self, sim_s: float) -> None:
        self._anchor_sim = sim_s
        self._anchor_wall = self._time_fn()

    def set_factor(self, factor: float) -> None:
        """Change the pace from now on (thread-safe)."""
        self._check_factor(factor)
        with self._lock:
            self._reanchor_locked(self._sim_now_locked())
            self._factor = factor
        self.wake()

    def pause(self) -> None:
        """Freeze simulated time (thread-safe)."""
        with self._lock:
            if not self._paused:
                self._anchor_sim = self._sim_now_locked()
                self._paused = True
        self.wake()

    def resume(self) -> None:
        """Let simulated time run again from where it was paused (thread-safe)."""
        with self._lock:
            if self._paused:
                self._paused = False
                self._reanchor_locked(self._anchor_sim)
        self.wake()

    def wake(self) -> None:
        self._wake_event.set()

    def run(self, env: simpy.Environment, until: simpy.Event) -> None:
        """Step ``env`` no faster than ``factor`` x wall time until ``until`` has been processed."""
        with self._lock:
            self._env = env
            self._reanchor_locked(env.now)
        try:
            while not until.processed:
                with self._lock:
                    paused = self._paused
                    next_s = env.peek()
                    due_wall = self._anchor_wall + (next_s - self._anchor_sim) / self._factor
                if paused:
                    self._wait_fn(None)
                    continue
                if next_s == math.inf:
                    raise RuntimeError("paced clock: no scheduled events left before the run's end event")
                now_wall = self._time_fn()
                if now_wall < due_wall:
                    self._wait_fn(due_wall - now_wall)
                    continue  # re-check: woken early by pause, factor change or a command
                self.lag_s = max(self.lag_s, now_wall - due_wall)
                env.step()
        finally:
            with self._lock:
                self._anchor_sim = env.now
                self._env = None
