"""Runs a scenario headless on a :class:`~simulators.dicom.site.LocalSite`: the same TMS, devices and DICOM
path as ``rtsim demo`` and the console, with a fast clock.

1. Plans are built and scheduled on the TMS through DICOM (C-STORE + UPS N-CREATE), one workitem per
   fraction, all dated today in file order (the device takes them in that order).
2. Each device works its worklist in its own thread until nothing is left. Faults are armed per session
   (the n-th workitem a machine delivers) through ``session_options`` (engine hooks, a bus, a clock),
   network faults through the devices' ``network_faults`` hook, crashes through their checkpoints. A
   crashed device is restarted: it recovers from its journal. Latched interlocks and an open door carry
   over to the machine's next session.
3. The expectations read the TMS over DICOM (:mod:`simulators.dicom.observer`) and the trace.

Deterministic for a seed: each fault and script has its own random stream
(``numpy.random.SeedSequence(seed).spawn``), the devices' axis noise is seeded from the seed, and the trace
holds simulated times only, per machine in the order that machine's thread produced them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from machine_models import dump_model, load_model
from scenarios.errors import ScenarioError
from scenarios.expectations import Observed, WorkitemView
from scenarios.faults import DeviceCrash, NetworkFault
from scenarios.model import FaultSpec, MachineSpec, Scenario, ScriptSpec
from scenarios.plans import build_plan
from scenarios.trace import Trace, event_entry
from scenarios.triggers import CheckpointTrigger, OperationTrigger, TimeTrigger
from simulators.core import events as ev
from simulators.core.bus import EventBus
from simulators.core.clock import FastClock
from simulators.core.engine import DeliveryEngine
from simulators.core.program import ProgramUnit
from simulators.devices.base import driver_for
from simulators.devices.session import SessionRequest
from simulators.dicom.observer import TmsObserver, workitems
from simulators.dicom.peers import Peer
from simulators.dicom.site import DeviceSpec, LocalSite, workitem_code
from simulators.dicom.tdd import OutcomeState, TmsUnavailableError, WorkitemOutcome
from simulators.dicom.tdd.scu import InjectedNetworkFault
from simulators.dicom.tms.client import request_cancel, schedule_plan
from simulators.dicom.tms.config import DEFAULT_CLIENT_AE
from simulators.errors import RtsimError

LOG = logging.getLogger(__name__)
CANCEL_HEARD_TIMEOUT_S = 10.0


@dataclass
class ExpectationResult:
    key: str  # "expect[2]" or "run"
    description: str
    passed: bool
    message: str
    why: str = ""


@dataclass
class ScenarioResult:
    scenario: Scenario
    seed: int
    trace: list[dict[str, Any]]
    results: list[ExpectationResult]
    outcomes: list[WorkitemOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


class _WakeClock(FastClock):
    """A fast clock that tells when another thread posted a command to the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.woken = threading.Event()

    def wake(self) -> None:
        self.woken.set()


@dataclass
class _Armed:
    spec: FaultSpec
    rng: np.random.Generator
    fired: bool = False


class _MachineRun:
    """One machine's state across its sessions (the device thread and its sim thread are the same)."""

    def __init__(self, spec: MachineSpec, runner: _Runner) -> None:
        self.spec = spec
        self.runner = runner
        self.trace = runner.trace
        self.session = 0
        self.claims = 0
        self.offset_s = 0.0
        self.engine: DeliveryEngine | None = None
        self.clock: _WakeClock | None = None
        self.in_delivery = False
        self.unit: tuple[ProgramUnit, float] | None = None
        self.latched: dict[str, bool] = {}
        self.door_open = False
        self.current_ups = ""
        self.crash_at: str | None = None
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.later: list[list[Any]] = []  # [due machine time, action(engine), done]
        self.lock = threading.Lock()
        self.faults = [a for a in runner.armed if a.spec.machine == spec.name]
        self.model = load_model(runner.models[spec.name])
        self.op_counts = [0] * len(self.faults)
        self.op_hits = [0] * len(self.faults)

    # -- trace -----------------------------------------------------------------------------------
    def now(self) -> float:
        if self.engine is not None and self.in_delivery:
            return self.offset_s + float(self.engine.env.now)
        return self.offset_s

    def add(self, event: str, **fields: Any) -> None:
        """A trace entry; from a helper thread (progress N-SETs) it waits for the delivery to end."""
        on_main = threading.current_thread().name.startswith("scenario-")
        with self.lock:
            if not on_main:
                self.pending.append((event, fields))
                return
            if not self.in_delivery and self.pending:
                for pending_event, pending_fields in self.pending:
                    self.trace.add(self.spec.name, self.now(), self.session, pending_event, **pending_fields)
                self.pending.clear()
            self.trace.add(self.spec.name, self.now(), self.session, event, **fields)

    # -- device hooks ----------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        self.add("retry_wait", seconds=float(seconds))

    def checkpoint(self, name: str, ups_uid: str) -> None:
        if name == "claimed":
            self.claims += 1
        if name in ("claimed", "delivering"):
            self.current_ups = ups_uid
        if self.crash_at == name:
            self.crash_at = None
            raise DeviceCrash(f"device {self.spec.name} died at {name}")
        workitem = self.claims + (1 if name == "before_claim" else 0)
        for armed in self.faults:
            trigger = armed.spec.trigger
            if (
                isinstance(trigger, CheckpointTrigger)
                and trigger.checkpoint == name
                and not armed.fired
                and armed.spec.session == workitem
            ):
                self._fire(armed)

    def network(self, operation: str, what: str, peer: Peer) -> InjectedNetworkFault | None:
        if not what.startswith("RO-62 progress"):
            self.add("dicom", op=operation, what=what, to=peer.ae_title)
        with self.lock:
            hit: tuple[_Armed, InjectedNetworkFault] | None = None
            for i, armed in enumerate(self.faults):
                trigger = armed.spec.trigger
                if not isinstance(trigger, OperationTrigger) or not trigger.matches(operation, what):
                    continue
                self.op_counts[i] += 1
                fault = armed.spec.fault
                assert isinstance(fault, NetworkFault)
                if hit is None and self.op_counts[i] >= trigger.nth and self.op_hits[i] < fault.count:
                    self.op_hits[i] += 1
                    armed.fired = True
                    hit = (armed, fault.network_fault())
        if hit is None:
            return None
        armed, injected = hit
        self.add("fault", fault=armed.spec.fault.name, what=f"{injected.description}: {operation} {what}")
        return injected

    # -- sessions --------------------------------------------------------------------------------
    def session_options(self, request: SessionRequest) -> dict[str, Any]:
        self.session += 1
        session = self.session
        bus = EventBus()
        self.clock = _WakeClock()
        tasks = request.beam_tasks or ()
        what = ", ".join(_describe_task(t) for t in tasks) or "every unit of fraction group 1"

        def hook(engine: DeliveryEngine) -> None:
            self.engine = engine
            self.unit = None
            self.in_delivery = True
            self.add("session", what=what)
            engine.bus.subscribe(self.on_event)
            for armed in self.faults:
                trigger = armed.spec.trigger
                if armed.spec.session != session or getattr(trigger, "kind", "") != "engine":
                    continue
                if isinstance(trigger, TimeTrigger) and trigger.time_s == 0.0:
                    self._fire(armed)  # before the run: faults that watch the session from its start
                else:
                    trigger.arm(engine, armed.rng, lambda a=armed: self._fire(a))
            for item in self.later:
                if not item[2]:
                    engine.schedule_at(max(item[0] - self.offset_s, 0.0), lambda i=item: self._run_later(i))
            for script, rng in self.runner.scripts:
                if script.machine == self.spec.name and script.session == session:
                    engine.env.process(script_process(script, self._context(rng)))

        options: dict[str, Any] = {
            "clock": self.clock,
            "interrupt_timeout_s": self.spec.interrupt_timeout_s,
        }
        if self.latched:
            options["interlocks"] = dict(self.latched)
        if self.door_open:
            options["door_open"] = True
        return {"bus": bus, "engine_hooks": (hook,), "engine_options": options}

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.UnitStarted) and self.engine is not None:
            unit = next((u for u in self.engine.program.units if u.number == event.unit_number), None)
            self.unit = (unit, float(event.time_s)) if unit is not None else None
        found = event_entry(event)
        if found is not None:
            kind, fields = found
            self.add(kind, **fields)
        if isinstance(event, ev.DeliveryFinished):
            self.end_session()

    def end_session(self) -> None:
        engine = self.engine
        if engine is not None:
            self.latched = {c: latching for c, latching in engine.active_interlocks.items() if latching}
            self.door_open = engine.door_open
            for armed in self.faults:
                if (
                    armed.spec.session == self.session
                    and getattr(armed.spec.trigger, "kind", "") == "engine"
                    and not armed.fired
                ):
                    self.add(
                        "fault_not_fired", fault=armed.spec.fault.name, what=armed.spec.trigger.describe()
                    )
            self.offset_s += float(engine.env.now)
        self.in_delivery = False
        self.unit = None

    def _run_later(self, item: list[Any]) -> None:
        if not item[2] and self.engine is not None:
            item[2] = True
            item[1](self.engine)

    def _context(self, rng: np.random.Generator) -> _Context:
        return _Context(self, rng)

    def _fire(self, armed: _Armed) -> None:
        if armed.fired:
            return
        armed.fired = True
        spec = armed.spec
        self.add("fault", fault=spec.fault.name, what=spec.trigger.describe(), params=spec.fault.params())
        try:
            spec.fault.apply(self._context(armed.rng))
        except DeviceCrash:
            raise
        except Exception as error:  # a fault that cannot act is reported, not a crash of the run
            self.add("fault_error", fault=spec.fault.name, error=f"{type(error).__name__}: {error}")


def _describe_task(task: Any) -> str:
    """``TREATMENT beam 1``, ``CONTINUATION beam 1 from 112 MU``, ``CONTINUATION application setup 1``."""
    kind = getattr(task, "delivery_type", "TREATMENT")
    if hasattr(task, "beam_number"):
        start = getattr(task, "start_meterset_mu", None)
        return f"{kind} beam {task.beam_number}" + (f" from {start:g} MU" if start else "")
    if hasattr(task, "setup_number"):
        return f"{kind} application setup {task.setup_number}"
    return str(kind)


class _Context:
    """What faults and scripts act on (satisfies :class:`scenarios.faults.FaultContext`)."""

    def __init__(self, run: _MachineRun, rng: np.random.Generator) -> None:
        self.run = run
        self.rng = rng
        self.machine = run.spec.name
        self.engine = run.engine
        self.emergency_retraction_s = getattr(
            getattr(run.model, "afterloader", None), "emergency_retraction_s", None
        )
        self.env = run.engine.env if run.engine is not None else None

    def note(self, what: str, **details: Any) -> None:
        self.run.add("note", what=what, **details)

    def current_unit(self) -> tuple[ProgramUnit, float] | None:
        return self.run.unit

    def crash_at(self, checkpoint: str) -> None:
        self.run.crash_at = checkpoint

    def later(self, delay_s: float, action: Callable[[DeliveryEngine], None]) -> None:
        run = self.run
        item = [run.now() + delay_s, action, False]
        run.later.append(item)
        if run.engine is not None and run.in_delivery:
            run.engine.schedule_at(float(run.engine.env.now) + delay_s, lambda: run._run_later(item))

    def request_cancel(self, reason: str) -> int:
        run = self.run
        if not run.current_ups:
            raise RtsimError("no workitem is being delivered")
        clock = run.clock
        if clock is not None:
            clock.woken.clear()
        status = request_cancel(
            run.runner.site.tms_peer, run.current_ups, reason, calling_ae=run.runner.calling_ae
        )
        if clock is not None and not clock.woken.wait(CANCEL_HEARD_TIMEOUT_S):
            self.note(f"the device did not hear the cancel request within {CANCEL_HEARD_TIMEOUT_S:g} s")
        return status

    def fault(self, name: str, **params: Any) -> None:
        """Apply a library fault now (scripts)."""
        from scenarios.faults import FAULTS

        fault = FAULTS[name](**params)
        self.run.add("fault", fault=name, what="from a script", params=fault.params())
        fault.apply(self)


def script_process(script: ScriptSpec, ctx: _Context):
    """Load ``script.function`` from its file and return its SimPy process generator."""
    spec = importlib.util.spec_from_file_location(f"rtsim_scenario_script_{script.path.stem}", script.path)
    if spec is None or spec.loader is None:
        raise ScenarioError(str(script.path), script.key, "cannot load the script")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, script.function, None)
    if function is None:
        raise ScenarioError(str(script.path), f"{script.key}.function", f"no function {script.function!r}")
    result = function(ctx)
    if result is None or not hasattr(result, "send"):
        raise ScenarioError(
            str(script.path), f"{script.key}.function", "must be a generator function (a SimPy process)"
        )
    return result


class _Runner:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        work_dir: Path,
        tms: Peer | None,
        ost: Peer | None,
        device_port_base: int,
        calling_ae: str,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.work_dir = work_dir
        self.calling_ae = calling_ae
        self.trace = Trace([m.name for m in scenario.machines])
        streams = np.random.SeedSequence(seed).spawn(len(scenario.faults) + len(scenario.scripts))
        self.armed = [
            _Armed(spec, np.random.default_rng(s)) for spec, s in zip(scenario.faults, streams, strict=False)
        ]
        self.scripts = [
            (script, np.random.default_rng(s))
            for script, s in zip(scenario.scripts, streams[len(scenario.faults) :], strict=True)
        ]
        self.day_start = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
        self.models = {m.name: self._model_path(m) for m in scenario.machines}
        self.runs = {m.name: _MachineRun(m, self) for m in scenario.machines}
        self.site = LocalSite(
            work_dir,
            [
                DeviceSpec(
                    machine=self.models[m.name],
                    station=m.station,
                    ae_title=m.name,
                    answers_to=m.answers_to,
                    require_approved=m.require_approved,
                )
                for m in scenario.machines
            ],
            seed=seed,
            session_options=lambda ae, request: self.runs[ae].session_options(request),
            device_options=lambda spec: {
                "checkpoint": self.runs[spec.ae_title].checkpoint,
                "network_faults": self.runs[spec.ae_title].network,
                "sleep": self.runs[spec.ae_title].sleep,
            },
            external_tms=tms,
            external_ost=ost,
            device_port_base=device_port_base,
        )
        self.plan_metersets: dict[str, dict[int, float]] = {}
        self.plan_units: dict[str, str] = {}
        self.outcomes: list[WorkitemOutcome] = []
        self.errors: list[str] = []

    def _model_path(self, machine: MachineSpec) -> str:
        """The model to run: as given, or (``fresh_source``) with its source calibrated as the run starts
        (a freshly exchanged source; the sample plans' dwell times are for its strength)."""
        if not machine.fresh_source:
            return machine.model
        model = load_model(machine.model)
        if model.afterloader is None:
            raise ScenarioError(
                self.scenario.source, "machines", f"{machine.name}: fresh_source needs an afterloader"
            )
        calibrated = datetime.now().replace(microsecond=0)
        source = dataclasses.replace(model.afterloader.source, calibration_datetime=calibrated)
        fresh = dataclasses.replace(model, afterloader=dataclasses.replace(model.afterloader, source=source))
        folder = self.work_dir / "machines"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{machine.name}.toml"
        path.write_text(dump_model(fresh), encoding="utf-8")
        return str(path)

    def schedule(self) -> None:
        scenario = self.scenario
        plans = {p.name: p for p in scenario.plans}
        machines = {m.name: m for m in scenario.machines}
        day_start = self.day_start
        k = 0
        for entry in scenario.schedule:
            machine = machines[entry.machine]
            model = self.runs[machine.name].model
            source = model.afterloader.source if machine.fresh_source and model.afterloader else None
            try:
                plan = build_plan(plans[entry.plan], source=source)
            except RtsimError as error:
                raise ScenarioError(scenario.source, entry.key, f"plan {entry.plan!r}: {error}") from None
            kind = model.kind
            code = workitem_code(driver_for(kind).workitem_code_value)
            metersets = plan_metersets(plan)
            for offset, label in enumerate(entry.labels()):
                k += 1
                try:
                    schedule_plan(
                        plan,
                        machine.station,
                        1,
                        tms=self.site.tms_peer,
                        ost=self.site.ost_peer,
                        calling_ae=self.calling_ae,
                        start=day_start + timedelta(seconds=k),
                        first_fraction=entry.first_fraction + offset,
                        label=label,
                        priority=entry.priority,
                        workitem_code=code,
                    )
                except RtsimError as error:
                    raise ScenarioError(
                        scenario.source, entry.key, f"scheduling {label!r}: {error}"
                    ) from None
                self.plan_metersets[label] = metersets
                self.plan_units[label] = "s" if "ApplicationSetupSequence" in plan else "MU"

    def work(self) -> None:
        threads = [
            threading.Thread(target=self._work_one, args=(name,), name=f"scenario-{name}")
            for name in self.runs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _work_one(self, name: str, max_rounds: int = 12) -> None:
        run = self.runs[name]
        device = self.site.devices[name].device
        for _ in range(max_rounds):
            try:
                found = device.run_once()
            except DeviceCrash as crash:
                run.in_delivery = False
                if run.engine is not None and run.engine.result is None:
                    run.offset_s += float(run.engine.env.now)
                run.add("crash", what=f"{crash}; the device restarts and recovers from its journal")
                continue
            except TmsUnavailableError as error:  # a real device polls again later
                run.add("tms_unavailable", error=str(error))
                continue
            except Exception as error:  # reported as a failed run, never a traceback
                LOG.debug("device %s failed", name, exc_info=True)
                run.add("device_error", error=f"{type(error).__name__}: {error}")
                self.errors.append(f"device {name}: {type(error).__name__}: {error}")
                return
            for outcome in found:
                run.add(
                    "outcome",
                    workitem=outcome.label or outcome.ups_uid,
                    state=outcome.state,
                    reason=outcome.reason,
                    recovered=outcome.recovered,
                )
            self.outcomes.extend(found)
            if not found:
                return
        run.add("device_error", error=f"still busy after {max_rounds} passes over the worklist")
        self.errors.append(f"device {name}: still busy after {max_rounds} passes over the worklist")

    def observe(self) -> Observed:
        observer = TmsObserver(self.site.tms_peer, self.site.ost_peer, calling_ae=self.calling_ae)
        views = [WorkitemView(entry, outputs) for entry, outputs in workitems(observer)]
        labels = {v.entry.uid: v.label for v in views}
        for view in sorted(views, key=lambda v: v.label):
            entry = view.entry
            self.trace.add_tail(
                "worklist",
                workitem=view.label,
                state=entry.state,
                delivery_type=entry.delivery_type,
                progress=entry.progress_percent,
                reason=entry.reason,
                replaces=labels.get(entry.replaces, entry.replaces),
                records=len(view.record_refs),
            )
        for uid, label in labels.items():
            self.trace.mask(uid, label)
        self.trace.mask(str(self.work_dir), "<run>")
        return Observed(views, [], self.plan_metersets, observer, units=self.plan_units)


def plan_metersets(plan) -> dict[int, float]:
    """Beam number -> planned MU (fraction group 1), or channel number -> Channel Total Time (brachy)."""
    out: dict[int, float] = {}
    for setup in plan.get("ApplicationSetupSequence") or []:
        for channel in setup.get("ChannelSequence") or []:
            if channel.get("ChannelTotalTime") not in (None, ""):
                out[int(channel.ChannelNumber)] = float(channel.ChannelTotalTime)
    if out:
        return out
    groups = plan.get("FractionGroupSequence") or []
    if not groups:
        return out
    for ref in groups[0].get("ReferencedBeamSequence") or []:
        if ref.get("BeamMeterset") not in (None, ""):
            out[int(ref.ReferencedBeamNumber)] = float(ref.BeamMeterset)
    return out


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    work_dir: Path | None = None,
    tms: Peer | None = None,
    ost: Peer | None = None,
    device_port_base: int = 0,
    calling_ae: str = DEFAULT_CLIENT_AE,
    on_site_started: Callable[[LocalSite], None] | None = None,
) -> ScenarioResult:
    """Run ``scenario`` to its expectation results (``tms``: a user's TMS instead of the embedded one)."""
    started = time.monotonic()
    seed = scenario.seed if seed is None else seed
    temporary = work_dir is None
    folder = Path(tempfile.mkdtemp(prefix="rtsim-scenario-")) if work_dir is None else Path(work_dir)
    runner = _Runner(scenario, seed, folder, tms, ost, device_port_base, calling_ae)
    results: list[ExpectationResult] = []
    try:
        with runner.site as site:
            if on_site_started is not None:
                on_site_started(site)
            runner.schedule()
            runner.work()
            observed = runner.observe()
            observed.trace = runner.trace.entries()
            for error in runner.errors:
                results.append(ExpectationResult("run", "the run itself", False, error))
            for index, expectation in enumerate(scenario.expectations):
                try:
                    passed, message = expectation.check(observed)
                except RtsimError as error:
                    passed, message = False, f"could not check: {error}"
                results.append(
                    ExpectationResult(
                        f"expect[{index}]", expectation.describe(), passed, message, expectation.why
                    )
                )
            trace = observed.trace
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    return ScenarioResult(scenario, seed, trace, results, runner.outcomes, time.monotonic() - started)


__all__ = ["ExpectationResult", "OutcomeState", "ScenarioResult", "run_scenario"]
