"""``rtsim device run --console``: one device working a TMS's worklist on its own, watched live."""

from __future__ import annotations

import asyncio
import dataclasses

from tui_helpers import plain, until

from machine_models import load_model
from simulators.dicom.peers import Peer
from simulators.dicom.tdd import DeviceConfig
from simulators.dicom.tms.client import schedule_plan
from simulators.dicom.tms.config import DEFAULT_CLIENT_AE, TmsConfig
from simulators.dicom.tms.server import TmsServer
from simulators.plans.samples.linac import sample_linac_plan
from tui.app import make_console
from tui.local import device_clinic
from tui.widgets.machine_card import MachineCard


def test_device_console_delivers_from_an_external_tms_in_auto_mode(tmp_path) -> None:
    model = load_model("truebeam-millennium120")
    config = DeviceConfig(
        ae_title="EXT1",
        station="EXT1",
        machine=model,
        tms=Peer("TMS", "127.0.0.1", 1),
        out_dir=tmp_path / "dev",
    )
    clinic = device_clinic([config], speed=60.0, poll_interval_s=0.5)
    device_startup = clinic.startup
    servers: list[TmsServer] = []

    def startup(c) -> None:  # the device first (its port), then "someone else's" TMS that knows it
        device_startup(c)
        device = c.machines["EXT1"].device
        tms = TmsServer(
            TmsConfig(
                data_dir=tmp_path / "tms",
                ae_title="TMS",
                port=0,
                ost_ae_title="OST",
                ost_port=0,
                peers=(device.peer,),
                allowed_ae_titles=(DEFAULT_CLIENT_AE,),
            )
        )
        tms.start()
        servers.append(tms)
        tms_peer, ost_peer = Peer("TMS", "127.0.0.1", tms.port), Peer("OST", "127.0.0.1", tms.ost_port)
        device.config = dataclasses.replace(device.config, tms=tms_peer, peers={"OST": ost_peer})
        schedule_plan(
            sample_linac_plan("static-mlc", patient_id="EXT-001"), "EXT1", 1, tms=tms_peer, ost=ost_peer
        )

    clinic.startup = startup
    clinic.on_stop.append(lambda: [s.stop() for s in servers])

    async def run() -> None:
        app = make_console(clinic, refresh_hz=20)
        async with app.run_test(size=(150, 44)) as pilot:
            snap = lambda: clinic.snapshot("EXT1")  # noqa: E731
            await until(pilot, lambda: snap().beam_on, "the device switching the beam on by itself", 60)
            assert snap().auto
            await until(pilot, lambda: "COMPLETED" in snap().outcome, "the workitem COMPLETED", 60)
            await pilot.pause(0.2)
            card = plain(app.screen.query_one("#card-EXT1", MachineCard).content)
            assert "auto" in card
            assert "static-mlc" in card

            def texts() -> list[str]:
                return [line.text for line in clinic.log.since(0) if line.machine_id == "EXT1"]

            await until(
                pilot, lambda: any(t.startswith("RO-65 COMPLETED") for t in texts()), "the RO-65 log line"
            )
            assert not any("awaiting beam on" in t for t in texts())  # auto mode: no beam-on key

    asyncio.run(run())
