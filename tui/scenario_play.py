"""Play a failure-injection scenario in the console: the scenario runner drives, the console watches.

:func:`scenario_console` builds a clinic of the scenario's machines and a :class:`ScenarioPlay` that runs
:func:`scenarios.runner.run_scenario` on a background thread (the same LocalSite, faults, triggers and
DICOM checks as ``rtsim scenario run``). When the runner's site starts, the player attaches the console to
every session it runs: the console's trackers subscribe to the runner's bus, and the runner's fast clock
is replaced by a paced one (it still wakes the runner's clock, so a UPS cancel request is heard), so the
instructor sees the scenario at 1x..60x and can pause it. Expectations are shown pending while the
scenario plays and pass/fail (with the runner's message) when it ends: they are checked over DICOM
against the TMS, which is only meaningful once every workitem has ended. No Textual here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine_models import load_model
from simulators.core.clock import PacedClock
from simulators.devices.session import SessionRequest
from tui.clinic import Clinic, new_handle
from tui.tracker import EventLog


class _PacedWakeClock(PacedClock):
    """A paced clock that also wakes the clock it replaces (the runner waits on that one)."""

    def __init__(self, factor: float, inner: Any) -> None:
        super().__init__(factor)
        self.inner = inner

    def wake(self) -> None:
        super().wake()
        if self.inner is not None:
            self.inner.wake()


@dataclass(frozen=True)
class ExpectationLine:
    """One expectation as the console shows it."""

    description: str
    state: str  # "pending" | "passed" | "failed"
    message: str = ""


class ScenarioPlay:
    """A scenario playing on a background thread under the console."""

    def __init__(
        self, scenario: Any, clinic: Clinic, *, seed: int | None = None, work_dir: Path | None = None
    ):
        self.scenario = scenario
        self.clinic = clinic
        self.seed = seed
        self.work_dir = work_dir
        self.state = "waiting"  # waiting | running | passed | failed | error
        self.error = ""
        self.result: Any = None
        self._thread: threading.Thread | None = None
        self._live: list[dict[str, Any]] = []  # trace-like entries seen so far (for live verdicts)
        self._offsets: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def title(self) -> str:
        return f"{self.scenario.name}: {self.scenario.title}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scenario-play", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from scenarios.runner import run_scenario

        self.state = "running"
        log = self.clinic.log
        log.add("scenario", None, f"playing {self.title}", "operator")
        try:
            result = run_scenario(
                self.scenario, seed=self.seed, work_dir=self.work_dir, on_site_started=self._attach
            )
        except Exception as exc:  # shown in the console's scenario panel, never a traceback
            self.state, self.error = "error", f"{type(exc).__name__}: {exc}"
            log.add("scenario", None, f"scenario failed to run: {self.error}", "alarm")
            return
        self.result = result
        self.state = "passed" if result.passed else "failed"
        for r in result.results:
            log.add(
                "scenario",
                None,
                f"{'PASS' if r.passed else 'FAIL'} {r.description}: {r.message}",
                "info" if r.passed else "alarm",
            )
        log.add(
            "scenario", None, f"scenario {self.state.upper()} in {result.wall_s:.1f} s wall time", "operator"
        )

    def _attach(self, site: Any) -> None:
        """Hook the console into each session the runner starts (paced clock, trackers, views)."""
        original = site.session_options
        clinic = self.clinic

        def session_options(ae_title: str, request: SessionRequest) -> dict[str, Any]:
            options = dict(original(ae_title, request))
            if ae_title not in clinic.machines:
                return options
            engine_options = dict(options.get("engine_options") or {})
            clock = _PacedWakeClock(clinic.speed, engine_options.get("clock"))
            mine = clinic.session_options(ae_title, request, bus=options.get("bus"), clock=clock)
            mine["bus"].subscribe(lambda event, ae=ae_title: self._on_event(ae, event))
            options["bus"] = mine["bus"]
            options["engine_hooks"] = (*options.get("engine_hooks", ()), *mine["engine_hooks"])
            engine_options["clock"] = clock
            engine_options["sample_interval_s"] = clinic.sample_interval_s
            options["engine_options"] = engine_options
            return options

        site.session_options = session_options
        for name in site.devices:
            if name in clinic.machines:
                clinic.machines[name].tracker.note("device started by the scenario runner", "dicom")

    def _on_event(self, machine: str, event: Any) -> None:
        """Keep a trace-like entry per engine event (sim thread), on the machine's time line."""
        from scenarios.trace import event_entry
        from simulators.core.events import DeliveryFinished

        found = event_entry(event)
        with self._lock:
            offset = self._offsets.get(machine, 0.0)
            if found is not None:
                kind, fields = found
                self._live.append(
                    {**fields, "t": offset + float(event.time_s), "machine": machine, "event": kind}
                )
            if isinstance(event, DeliveryFinished):
                self._offsets[machine] = offset + float(event.time_s)

    def lines(self) -> list[ExpectationLine]:
        """Every expectation: pending while the scenario plays, except event expectations that are
        already decided by what happened (seen: passed; a ``never`` event seen: failed); the runner's
        verdicts when it ends."""
        if self.result is None:
            if self.state == "error":
                return [
                    ExpectationLine(e.describe(), "failed", self.error) for e in self.scenario.expectations
                ]
            return [self._live_line(e) for e in self.scenario.expectations]
        return [
            ExpectationLine(r.description, "passed" if r.passed else "failed", r.message)
            for r in self.result.results
        ]

    def _live_line(self, expectation: Any) -> ExpectationLine:
        name = getattr(expectation, "name", "")
        if name in ("event", "never"):
            with self._lock:
                observed = _LiveTrace(list(self._live))
            try:
                passed, message = expectation.check(observed)
            except Exception:
                passed, message = name == "never", ""
            if name == "event" and passed:
                return ExpectationLine(expectation.describe(), "passed", message)
            if name == "never" and not passed:
                return ExpectationLine(expectation.describe(), "failed", message)
        return ExpectationLine(expectation.describe(), "pending")


@dataclass
class _LiveTrace:
    """What an event expectation reads (``observed.trace``), from the console's own subscription."""

    trace: list[dict[str, Any]]


def scenario_console(
    path: Path, *, speed: float = 1.0, seed: int | None = None, work_dir: Path | None = None
) -> tuple[Clinic, ScenarioPlay]:
    """A clinic of the scenario's machines (auto mode: the scenario drives) and its player."""
    from scenarios.loader import load_scenario

    scenario = load_scenario(path)
    log = EventLog()
    handles = []
    for machine in scenario.machines:
        handle = new_handle(machine.name, load_model(machine.model), machine.station, log)
        handle.auto = True
        handle.manual = False
        handle.tracker.update(auto=True, manual=False)
        handles.append(handle)
    clinic = Clinic(handles, log=log, speed=speed, title=f"scenario {scenario.name}", seed=scenario.seed)
    play = ScenarioPlay(scenario, clinic, seed=seed, work_dir=work_dir)
    clinic.startup = lambda c: play.start()
    return clinic, play
