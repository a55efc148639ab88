"""A whole clinic on one machine: the embedded TMS and virtual devices, wired together on loopback.

``rtsim demo``, the scenario runner and the console all start their TMS and devices through
:class:`LocalSite`, so they exercise the same DICOM path a real TMS would see: devices pull their work
with UPS C-FIND, retrieve by C-MOVE, report with N-SET/N-ACTION and store records by C-STORE.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom import Dataset

from machine_models import load_model
from machine_models.schema import MachineModel
from simulators.devices.base import driver_for
from simulators.devices.session import SessionRequest
from simulators.dicom import codes
from simulators.dicom.codes import Code
from simulators.dicom.peers import Peer
from simulators.dicom.tdd import (
    Device,
    DeviceConfig,
    RetryPolicy,
    StopToken,
    WorkitemOutcome,
    session_deliver,
)
from simulators.dicom.tdd.delivery import ProgressCallback
from simulators.dicom.tms.client import ScheduledFraction, WorklistEntry, list_worklist, schedule_plan
from simulators.dicom.tms.config import DEFAULT_CLIENT_AE, TmsConfig
from simulators.dicom.tms.server import TmsServer
from simulators.errors import RtsimError

LOG = logging.getLogger(__name__)

# (device AE title, SessionRequest) -> options for DeliverySession (bus, engine_hooks, engine_options)
SessionOptionsFactory = Callable[[str, SessionRequest], dict[str, Any]]
# DeviceSpec -> extra keyword arguments for its Device (checkpoint, network_faults, sleep)
DeviceOptionsFactory = Callable[["DeviceSpec"], dict[str, Any]]


@dataclass(frozen=True)
class DeviceSpec:
    """One virtual device of the site: its machine model, station code and AE title."""

    machine: str  # bundled model id or TOML path
    station: str
    ae_title: str
    answers_to: str | None = None  # Treatment Machine Name, default the model's
    require_approved: bool = True


@dataclass
class SiteDevice:
    """A running device of the site."""

    spec: DeviceSpec
    model: MachineModel
    device: Device
    outcomes: list[WorkitemOutcome] = field(default_factory=list)


class LocalSite:
    """An embedded TMS (UPS + separate OST AE) and devices, all on 127.0.0.1 ephemeral ports.

    ``session_options`` lets a caller attach a bus and engine hooks to every delivery (faults, traces,
    a console); ``device_options`` gives each :class:`Device` extra arguments (checkpoint, network
    faults, sleep). With ``external_tms`` (and ``external_ost``, default the TMS) no TMS is started: the
    devices work for that TMS, listening on ``device_port_base + index`` (0: ephemeral) so that it can
    be told where they are. Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        data_dir: Path,
        devices: Sequence[DeviceSpec],
        *,
        seed: int = 0,
        session_options: SessionOptionsFactory | None = None,
        tms_ae_title: str = "TMS",
        ost_ae_title: str = "OST",
        device_options: DeviceOptionsFactory | None = None,
        external_tms: Peer | None = None,
        external_ost: Peer | None = None,
        device_port_base: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.specs = list(devices)
        self.seed = seed
        self.session_options = session_options
        self.tms_ae_title = tms_ae_title
        self.ost_ae_title = ost_ae_title
        self.device_options = device_options
        self.external_tms = external_tms
        self.external_ost = external_ost or external_tms
        self.device_port_base = device_port_base
        if external_tms is not None:
            self.tms_ae_title = external_tms.ae_title
            self.ost_ae_title = self.external_ost.ae_title
        self.tms: TmsServer | None = None
        self.devices: dict[str, SiteDevice] = {}
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> LocalSite:
        if self._started:
            return self
        self._started = True
        placeholder = Peer(self.tms_ae_title, "127.0.0.1", 1)
        for index, spec in enumerate(self.specs):
            model = load_model(spec.machine)
            workitem = driver_for(model.kind).workitem_code_value
            config = DeviceConfig(
                ae_title=spec.ae_title,
                station=spec.station,
                machine=model,
                tms=placeholder,
                out_dir=self.data_dir / "devices" / spec.ae_title,
                answers_to=spec.answers_to,
                require_approved=spec.require_approved,
                seed=self.seed + index,
                retry=RetryPolicy(attempts=3, first_delay_s=0.2),
                workitem_code=workitem_code(workitem),
                port=self.device_port_base + index if self.device_port_base else 0,
            )
            extra = self.device_options(spec) if self.device_options else {}
            device = Device(config, deliver=self._deliver_for(spec.ae_title), **extra).start()
            self.devices[spec.ae_title] = SiteDevice(spec, model, device)
        if self.external_tms is not None:
            self._point_devices_at(self.external_tms, self.external_ost)
            return self
        tms = TmsServer(
            TmsConfig(
                data_dir=self.data_dir / "tms",
                ae_title=self.tms_ae_title,
                port=0,
                ost_ae_title=self.ost_ae_title,
                ost_port=0,
                peers=tuple(d.device.peer for d in self.devices.values()),
                allowed_ae_titles=(DEFAULT_CLIENT_AE,),
            )
        )
        tms.start()
        self.tms = tms
        self._point_devices_at(self.tms_peer, self.ost_peer)
        return self

    def _point_devices_at(self, tms: Peer, ost: Peer) -> None:
        for site_device in self.devices.values():
            device = site_device.device
            device.config = dataclasses.replace(device.config, tms=tms, peers={ost.ae_title: ost})

    def stop(self) -> None:
        for site_device in self.devices.values():
            site_device.device.close()
        if self.tms is not None:
            self.tms.stop()
            self.tms = None
        self._started = False

    def __enter__(self) -> LocalSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def tms_peer(self) -> Peer:
        if self.external_tms is not None:
            return self.external_tms
        if self.tms is None:
            raise RtsimError("the site is not started")
        return Peer(self.tms_ae_title, "127.0.0.1", self.tms.port)

    @property
    def ost_peer(self) -> Peer:
        if self.external_ost is not None:
            return self.external_ost
        if self.tms is None:
            raise RtsimError("the site is not started")
        return Peer(self.ost_ae_title, "127.0.0.1", self.tms.ost_port)

    # -- what users do -----------------------------------------------------------------------------
    def schedule(
        self, plan: Dataset, station: str, fractions: int = 1, *, start: datetime | None = None
    ) -> list[ScheduledFraction]:
        """Schedule ``fractions`` sessions of ``plan`` for ``station`` through DICOM (C-STORE + N-CREATE).

        The workitem code is the one the station's device performs (121726 linac, 121735 afterloader).
        """
        kinds = [d.model.kind for d in self.devices.values() if d.spec.station == station]
        code = workitem_code(driver_for(kinds[0]).workitem_code_value) if kinds else None
        extra = {"workitem_code": code} if code is not None else {}
        return schedule_plan(
            plan, station, fractions, tms=self.tms_peer, ost=self.ost_peer, start=start, **extra
        )

    def worklist(self) -> list[WorklistEntry]:
        """Every workitem on the TMS, in scheduled order (UPS C-FIND)."""
        return list_worklist(self.tms_peer)

    def run_until_idle(self, max_rounds: int = 100) -> list[WorkitemOutcome]:
        """Let every device work (in parallel threads) until none finds anything left to do."""
        errors: list[BaseException] = []

        def work(site_device: SiteDevice) -> None:
            try:
                for _ in range(max_rounds):
                    found = site_device.device.run_once()
                    site_device.outcomes.extend(found)
                    if not found:
                        return
            except BaseException as error:  # reported on the calling thread
                errors.append(error)

        before = {ae: len(d.outcomes) for ae, d in self.devices.items()}
        threads = [
            threading.Thread(target=work, args=(d,), name=f"device-{ae}") for ae, d in self.devices.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [o for ae, d in self.devices.items() for o in d.outcomes[before[ae] :]]

    def _deliver_for(self, ae_title: str):
        def deliver(request: SessionRequest, stop: StopToken, progress: ProgressCallback):
            options = self.session_options(ae_title, request) if self.session_options else None
            return session_deliver(request, stop, progress, session_options=options)

        return deliver


_WORKITEM_CODES = {
    code.value: code
    for code in (
        codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION,
        codes.WORKITEM_RT_TREATMENT_EXTERNAL_VERIFICATION,
        codes.WORKITEM_RT_BRACHY_TREATMENT,
    )
}


def workitem_code(code_value: str) -> Code:
    """The UPS Scheduled Workitem Code for a driver's code value (CID 9241)."""
    return _WORKITEM_CODES.get(code_value) or Code(code_value, "DCM", code_value)
