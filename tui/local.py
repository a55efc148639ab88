"""Clinics the console can run: a whole local site (embedded TMS + devices + sample plans), or devices
working against an external TMS. No Textual here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom import Dataset

from machine_models import load_model
from machine_models.decay import strength_at
from simulators.dicom.site import DeviceSpec, LocalSite
from simulators.dicom.tdd import Device, DeviceConfig
from simulators.plans.samples.linac import sample_linac_plan
from tui.clinic import Clinic, MachineHandle, new_handle
from tui.tracker import EventLog


@dataclass(frozen=True)
class ConsoleMachine:
    """A device of the local clinic and the sample plans put on its worklist at start-up."""

    spec: DeviceSpec
    plans: Callable[[], Sequence[tuple[Dataset, int]]] = lambda: ()


def _linac_plans(machine_name: str, first_patient: int) -> Callable[[], list[tuple[Dataset, int]]]:
    def plans() -> list[tuple[Dataset, int]]:
        out = []
        for offset, kind in enumerate(("vmat", "static-mlc", "step-and-shoot")):
            patient = f"RTSIM-{first_patient + offset:03d}"
            name = f"TRAINING^PATIENT{first_patient + offset}"
            out.append(
                (sample_linac_plan(kind, machine_name=machine_name, patient_id=patient, patient_name=name), 1)
            )
        return out

    return plans


def default_machines(count: int = 2) -> list[ConsoleMachine]:
    """``count`` linacs (TrueBeam, Millennium 120 MLC), each with three sample plans, plus an afterloader
    when that device kind is available."""
    machines = []
    for i in range(1, count + 1):
        ae = f"LINAC{i}"
        name = f"TrueBeam{i}"
        spec = DeviceSpec(machine="truebeam-millennium120", station=ae, ae_title=ae, answers_to=name)
        machines.append(ConsoleMachine(spec, _linac_plans(name, 100 * i + 1)))
    machines.extend(_afterloader_machines())
    return machines


def _afterloader_machines() -> list[ConsoleMachine]:
    """An HDR afterloader with the HDR sample brachy plans, once the afterloader simulator exists."""
    try:
        from simulators.devices.base import driver_for
        from simulators.plans.samples.brachy import SAMPLE_BRACHY_PLANS, sample_brachy_plan

        driver_for("afterloader")
        model = load_model("microselectron-v3")
    except Exception:  # the afterloader is not there (yet): linacs only
        return []

    def plans() -> list[tuple[Dataset, int]]:
        names = [n for n in SAMPLE_BRACHY_PLANS if n.startswith("hdr-")]
        # planned for the source as it is today, so the decay correction at treatment is small
        installed = model.afterloader.source
        today = datetime.now().replace(microsecond=0)
        strength = strength_at(
            installed.reference_air_kerma_rate_ugy_per_h,
            installed.calibration_datetime,
            installed.half_life_days,
            today,
        )
        source = dataclasses.replace(
            installed, reference_air_kerma_rate_ugy_per_h=round(strength, 1), calibration_datetime=today
        )
        return [
            (
                sample_brachy_plan(
                    n,
                    machine_name=model.treatment_machine_name,
                    source=source,
                    patient_id=f"RTSIM-B{i + 1:02d}",
                    patient_name=f"TRAINING^BRACHY{i + 1}",
                ),
                1,
            )
            for i, n in enumerate(names)
        ]

    spec = DeviceSpec(machine="microselectron-v3", station="HDR1", ae_title="HDR1")
    return [ConsoleMachine(spec, plans)]


def local_clinic(
    data_dir: Path,
    machines: Sequence[ConsoleMachine] | None = None,
    *,
    speed: float = 1.0,
    seed: int = 0,
    sample_interval_s: float = 0.5,
) -> Clinic:
    """A clinic on this computer: the embedded TMS and ``machines`` on loopback, sample plans scheduled.

    The site starts in the background when the clinic starts (the console shows it coming up).
    """
    machines = list(machines if machines is not None else default_machines())
    log = EventLog()
    handles = [new_handle(m.spec.ae_title, load_model(m.spec.machine), m.spec.station, log) for m in machines]
    clinic = Clinic(
        handles, log=log, speed=speed, sample_interval_s=sample_interval_s, title="local clinic", seed=seed
    )
    site = LocalSite(
        Path(data_dir), [m.spec for m in machines], seed=seed, session_options=clinic.session_options
    )

    def startup(c: Clinic) -> None:
        log.add("clinic", None, f"starting the embedded TMS and {len(machines)} device(s) in {data_dir}")
        site.start()
        log.add("clinic", None, f"TMS {site.tms_peer}, OST {site.ost_peer}")
        for m in machines:
            c.machines[m.spec.ae_title].device = site.devices[m.spec.ae_title].device
            for plan, fractions in m.plans():
                site.schedule(plan, m.spec.station, fractions)
            log.add(m.spec.ae_title, None, "sample plans scheduled on the TMS worklist", "dicom")

    clinic.startup = startup
    clinic.on_stop.append(site.stop)
    clinic.site = site  # type: ignore[attr-defined]
    return clinic


def device_clinic(
    configs: Sequence[DeviceConfig], *, speed: float = 1.0, auto: bool = True, poll_interval_s: float = 5.0
) -> Clinic:
    """Devices working against an external TMS (``rtsim device run --console``).

    In auto mode each device polls its worklist every ``poll_interval_s`` and delivers what it finds, the
    beam switching on by itself; the operator and instructor controls still act on the running session.
    """
    log = EventLog()
    handles: list[MachineHandle] = []
    for config in configs:
        handle = new_handle(config.ae_title, config.machine, config.station, log)
        handle.auto = auto
        handle.tracker.update(auto=auto)
        handles.append(handle)
    title = f"TMS {configs[0].tms}" if configs else ""
    clinic = Clinic(handles, log=log, speed=speed, title=title, poll_interval_s=poll_interval_s)
    for config, handle in zip(configs, handles, strict=True):
        handle.device = Device(config, deliver=clinic.deliver_for(config.ae_title))

    def startup(c: Clinic) -> None:
        for handle in c.machines.values():
            assert handle.device is not None
            handle.device.start()
            log.add(
                handle.machine_id, None, f"listening at {handle.device.peer}; TMS {handle.device.config.tms}"
            )

    def close() -> None:
        for handle in clinic.machines.values():
            if handle.device is not None:
                handle.device.close()

    clinic.startup = startup
    clinic.on_stop.append(close)
    return clinic
