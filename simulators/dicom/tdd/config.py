"""Installation config of one virtual device on the network (where it is, who it talks to)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from machine_models.schema import MachineModel
from simulators.dicom import codes
from simulators.dicom.codes import Code
from simulators.dicom.peers import Peer
from simulators.dicom.tdd.retry import RetryPolicy
from simulators.dicom.tdd.scu import Timeouts
from simulators.errors import RtsimError


class DeviceConfigError(RtsimError):
    """The device configuration is incomplete or inconsistent."""


@dataclass(frozen=True)
class DeviceConfig:
    """Everything a device needs to run TDW-II against a TMS.

    ``station`` is the Scheduled Station Name Code Value the TMS schedules this device with.
    ``peers`` maps AE titles named in worklist items (Retrieve AE Title: the OST, the TMS) to addresses;
    the TMS is always known. ``ost`` is where records go; ``None``: to the AE the plan came from.
    ``journal_dir`` defaults to ``out_dir / "journal"``. ``port`` 0 picks an ephemeral port.
    """

    ae_title: str
    station: str
    machine: MachineModel
    tms: Peer
    port: int = 0
    host: str = "127.0.0.1"
    peers: Mapping[str, Peer] = field(default_factory=dict)
    ost: Peer | None = None
    out_dir: Path = Path("rtsim-out")
    journal_dir: Path | None = None
    workitem_code: Code = codes.WORKITEM_RT_TREATMENT_INTERNAL_VERIFICATION
    answers_to: str | None = None  # Treatment Machine Name override
    poll_interval_s: float = 5.0
    progress_step_percent: float = 25.0  # extra RO-62 N-SET each time progress advances this much
    watch: bool = True  # subscribe to the claimed UPS to hear Cancel Requested
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    seed: int = 0
    require_approved: bool = True
    operator_name: str = ""

    def __post_init__(self) -> None:
        if not 0 < len(self.ae_title.strip()) <= 16:
            raise DeviceConfigError(f"device AE title {self.ae_title!r}: must be 1 to 16 characters")
        if not self.station.strip():
            raise DeviceConfigError("device station name is empty: the TMS schedules workitems for a station")
        if not 0 <= self.port < 65536:
            raise DeviceConfigError(f"device port {self.port}: outside 0..65535")

    @property
    def machine_id(self) -> str:
        return self.machine.model_id

    @property
    def journal_path(self) -> Path:
        return self.journal_dir if self.journal_dir is not None else self.out_dir / "journal"

    def peer(self, ae_title: str) -> Peer:
        """The address of ``ae_title`` (DeviceConfigError naming how to add it if unknown)."""
        ae = ae_title.strip()
        if ae in self.peers:
            return self.peers[ae]
        if ae == self.tms.ae_title:
            return self.tms
        if self.ost is not None and ae == self.ost.ae_title:
            return self.ost
        known = ", ".join(sorted({*self.peers, self.tms.ae_title})) or "none"
        raise DeviceConfigError(
            f"AE title {ae!r} is not in the device's peer table (known: {known}); "
            f"add it, e.g. --peer {ae or 'OST'}=127.0.0.1:11114"
        )
