"""``rtsim demo``: the whole loop on this machine, told step by step.

An embedded TMS, a virtual TrueBeam and a virtual HDR afterloader start on loopback. Sample plans are
scheduled through DICOM; the linac pulls them from the UPS worklist, retrieves plan and delivery
instruction, delivers, stores its records and completes or cancels each workitem. One fraction is
interrupted by an opened door: the TMS schedules the CONTINUATION and the linac finishes it. One plan is
for another machine and is refused. The afterloader delivers a tandem-and-ring HDR fraction (workitem
121735, brachy delivery instruction, RT Brachy Treatment Record).
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom import Dataset

from machine_models import dump_model, load_model
from machine_models.decay import with_source_calibrated
from simulators.core.engine import DeliveryEngine
from simulators.devices.session import SessionRequest
from simulators.dicom.site import DeviceSpec, LocalSite
from simulators.plans.samples.brachy import sample_brachy_plan
from simulators.plans.samples.linac import sample_linac_plan

LINAC = DeviceSpec(machine="truebeam-millennium120", station="LINAC1", ae_title="LINAC1")
AFTERLOADER_MODEL = "microselectron-v3"
SOURCE_AGE_DAYS = 14  # the demo's afterloader source was exchanged two weeks ago
DOOR_OPEN_AT_FRACTION_OF_TIME = 0.45
_UID = re.compile(r"\b\d+(?:\.\d+){5,}\b")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="folder for this run's data")
    parser.add_argument("--seed", type=int, default=7, help="seed for axis noise (default 7)")
    parser.add_argument("--quiet", action="store_true", help="only the final table")


class _StepPrinter(logging.Handler):
    """Prints the devices' TDW-II steps (RO-58 ... RO-65) as they happen, with shortened UIDs."""

    def __init__(self, started: float) -> None:
        super().__init__(logging.INFO)
        self.started = started

    def emit(self, record: logging.LogRecord) -> None:
        text = _UID.sub(lambda m: "…" + m.group(0)[-6:], record.getMessage())
        device = record.threadName.removeprefix("device-") if record.threadName.startswith("device-") else ""
        print(f"  {time.monotonic() - self.started:6.2f}s {device:7s} {text}", flush=True)


class _DoorOpener:
    """Opens the treatment-room door once, part-way through the first VMAT fraction."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self, ae_title: str, request: SessionRequest) -> dict[str, Any]:
        label = str(request.plan_dataset.get("RTPlanLabel", ""))
        tasks = request.beam_tasks or ()
        first_session = all(getattr(t, "delivery_type", "TREATMENT") == "TREATMENT" for t in tasks)
        if self.done or label != "vmat" or not first_session:
            return {}
        self.done = True

        def open_door(engine: DeliveryEngine) -> None:
            at_s = engine.program.total_time_s * DOOR_OPEN_AT_FRACTION_OF_TIME
            engine.schedule_at(at_s, lambda: engine.set_door(True))

        return {"engine_hooks": (open_door,)}


def _plans() -> list[tuple[str, Dataset, int]]:
    """(what, plan, fractions) to schedule on LINAC1."""
    foreign = sample_linac_plan("static-mlc", machine_name="OtherLinac", patient_id="RTSIM-004")
    foreign.RTPlanLabel = "other-machine"
    return [
        ("static MLC field", sample_linac_plan("static-mlc", patient_id="RTSIM-001"), 1),
        ("step-and-shoot IMRT", sample_linac_plan("step-and-shoot", patient_id="RTSIM-002"), 1),
        ("VMAT arc (the door opens during fraction 1)", sample_linac_plan("vmat", patient_id="RTSIM-003"), 2),
        ("plan for machine 'OtherLinac' (refused)", foreign, 1),
    ]


def _afterloader(run_dir: Path) -> tuple[DeviceSpec, Dataset]:
    """The HDR afterloader (its source exchanged two weeks ago, written as a model file) and its plan."""
    model = load_model(AFTERLOADER_MODEL)
    exchanged = (datetime.now() - timedelta(days=SOURCE_AGE_DAYS)).replace(microsecond=0)
    model = with_source_calibrated(model, exchanged)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{AFTERLOADER_MODEL}.toml"
    path.write_text(dump_model(model))
    spec = DeviceSpec(str(path), station="HDR1", ae_title="HDR1", answers_to=model.treatment_machine_name)
    plan = sample_brachy_plan("hdr-cervix", source=model.afterloader.source, patient_id="RTSIM-005")
    return spec, plan


def run(args: argparse.Namespace) -> int:
    run_dir = args.out / datetime.now().strftime("run-%Y%m%d-%H%M%S")
    started = time.monotonic()
    printer = _StepPrinter(started)
    workflow_log = logging.getLogger("simulators.dicom.tdd.workflow")
    if not args.quiet:
        workflow_log.addHandler(printer)
        workflow_log.setLevel(logging.INFO)
        workflow_log.propagate = False
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    try:
        afterloader, brachy_plan = _afterloader(run_dir)
        devices = [LINAC, afterloader]
        with LocalSite(run_dir, devices, seed=args.seed, session_options=_DoorOpener()) as site:
            print(f"rtsim demo: embedded TMS {site.tms_peer}, OST {site.ost_peer}, data in {run_dir}")
            print(f"virtual linac {LINAC.ae_title} ({LINAC.machine}) at {site.devices['LINAC1'].device.peer}")
            print(
                f"virtual HDR afterloader {afterloader.ae_title} ({AFTERLOADER_MODEL}, source exchanged "
                f"{SOURCE_AGE_DAYS} days ago) at {site.devices['HDR1'].device.peer}"
            )
            print("\nScheduling through DICOM (C-STORE plan to the OST, N-CREATE UPS per fraction):")
            for what, plan, fractions in _plans():
                created = site.schedule(plan, LINAC.station, fractions)
                print(f"  {what}: {len(created)} workitem(s)")
            created = site.schedule(brachy_plan, afterloader.station, 1)
            print(f"  HDR tandem and ring (brachy, workitem 121735): {len(created)} workitem(s)")
            print("\nThe linac works through its worklist (IHE-RO TDW-II RO-58..RO-65):")
            outcomes = site.run_until_idle()
            print("\nOutcomes:")
            for outcome in outcomes:
                line = f"  {outcome.label or outcome.ups_uid}: {outcome.state}"
                result = outcome.session.result if outcome.session else None
                if result is not None:
                    delivered = sum(u.delivered_meterset for u in result.units)
                    specified = sum(u.specified_meterset for u in result.units)
                    unit = "s of dwell" if result.device_kind == "afterloader" else "MU"
                    line += (
                        f", {delivered:.1f} of {specified:.1f} {unit}, {result.end_time_s:.0f} s simulated"
                    )
                if outcome.reason:
                    line += f" ({outcome.reason})"
                print(line)
                if outcome.record_path:
                    print(f"      record: {outcome.record_path}")
            print("\nTMS worklist (UPS C-FIND, all states):")
            for entry in site.worklist():
                progress = "" if entry.progress_percent is None else f" {entry.progress_percent:.0f}%"
                reason = f" - {entry.reason}" if entry.reason else ""
                print(f"  {entry.state:12s}{progress:>5s}  {entry.delivery_type:12s} {entry.label}{reason}")
            print(
                "\nStill SCHEDULED: later fractions, dated on later days. The linac's RO-58 query asks for\n"
                "today's workitems only, as a console does; `rtsim tms worklist` shows them all."
            )
    finally:
        workflow_log.removeHandler(printer)
        workflow_log.propagate = True
    print(f"\nDone in {time.monotonic() - started:.1f} s wall time. TMS data and records: {run_dir}")
    return 0
