"""``rtsim device run``: a virtual device pulling its work from a TMS over IHE-RO TDW-II."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

from machine_models import load_model
from simulators.devices.base import driver_for
from simulators.dicom.peers import parse_named_peer, parse_peer
from simulators.dicom.site import workitem_code
from simulators.dicom.tdd import DeviceConfig, run_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    run_parser = sub.add_parser("run", help="poll the TMS worklist and deliver what is scheduled here")
    run_parser.add_argument("--machine", required=True, help="bundled model id or model TOML path")
    run_parser.add_argument("--station", required=True, help="the station code the TMS schedules for")
    run_parser.add_argument("--tms", required=True, type=parse_peer, help="AE@host:port of the TMS")
    run_parser.add_argument("--ae", default="LINAC1", help="this device's AE title (default LINAC1)")
    run_parser.add_argument("--host", default="127.0.0.1", help="address this device listens on")
    run_parser.add_argument("--port", type=int, default=11113, help="port for C-MOVE and UPS events")
    run_parser.add_argument(
        "--peer",
        action="append",
        default=[],
        type=parse_named_peer,
        metavar="AE=HOST:PORT",
        help="where an AE named in worklist items lives (e.g. OST=127.0.0.1:11114); repeatable",
    )
    run_parser.add_argument(
        "--ost", type=parse_peer, help="AE@host:port to store records on (default: plan's)"
    )
    run_parser.add_argument("--out", type=Path, default=Path("rtsim-device"), help="records and journal")
    run_parser.add_argument("--machine-name", help="Treatment Machine Name this device answers to")
    run_parser.add_argument("--allow-unapproved", action="store_true", help="deliver unapproved plans")
    run_parser.add_argument("--seed", type=int, default=0)
    run_parser.add_argument("--poll", type=float, default=5.0, help="worklist poll interval in seconds")
    run_parser.add_argument("--once", action="store_true", help="one pass: recover, deliver at most one item")
    run_parser.add_argument(
        "--console", action="store_true", help="watch the device in the training console (a terminal UI)"
    )
    run_parser.add_argument(
        "--speed", type=float, default=10.0, help="with --console: clock, simulated s per wall s (default 10)"
    )


def run(args: argparse.Namespace) -> int:
    model = load_model(args.machine)
    config = DeviceConfig(
        ae_title=args.ae,
        station=args.station,
        machine=model,
        tms=args.tms,
        host=args.host,
        port=args.port,
        peers={peer.ae_title: peer for peer in args.peer},
        ost=args.ost,
        out_dir=args.out,
        answers_to=args.machine_name,
        require_approved=not args.allow_unapproved,
        seed=args.seed,
        poll_interval_s=args.poll,
        workitem_code=workitem_code(driver_for(model.kind).workitem_code_value),
    )
    if getattr(args, "console", False):
        return _run_console(config, args.speed, args.poll)
    logging.getLogger("simulators.dicom.tdd").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(message)s")
    logging.getLogger("simulators.dicom.tdd").addHandler(_stdout_handler())
    logging.getLogger("simulators.dicom.tdd").propagate = False
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    print(f"device {args.ae} ({model.model_id}) for station {args.station}, TMS {args.tms}; Ctrl-C stops it")
    stop = threading.Event()
    try:
        outcomes = run_device(config, once=args.once, stop_event=stop)
    except KeyboardInterrupt:
        stop.set()
        return 130
    for outcome in outcomes:
        print(f"{outcome.label or outcome.ups_uid}: {outcome.state} {outcome.reason}".rstrip())
    return 0


def _stdout_handler() -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    return handler


def _run_console(config: DeviceConfig, speed: float, poll_s: float) -> int:
    """The device works through its worklist (auto mode) while the console shows it live."""
    from simulators.cli.console import require_terminal, run_console

    require_terminal()
    from tui.local import device_clinic  # lazy: Textual only when the console starts

    return run_console(device_clinic([config], speed=speed, auto=True, poll_interval_s=poll_s))
