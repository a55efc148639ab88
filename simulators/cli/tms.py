"""``rtsim tms``: serve the embedded TMS, schedule plans on it, show its worklist."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from simulators.dicom.peers import Peer, parse_named_peer, parse_peer
from simulators.dicom.tms.client import list_worklist, request_cancel, schedule_plan
from simulators.dicom.tms.config import DEFAULT_CLIENT_AE, TmsConfig, load_config
from simulators.dicom.tms.server import TmsServer
from simulators.plans.dicom_reader import read_dataset_file

DEFAULT_TMS = "TMS@127.0.0.1:11112"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tms_command", metavar="ACTION", required=True)

    serve = sub.add_parser("serve", help="run the embedded TMS (UPS SCP + OST) until Ctrl-C")
    serve.add_argument(
        "--config", type=Path, help="site TOML (docs/conformance.md, simulators/dicom/tms/config.py)"
    )
    serve.add_argument(
        "--data-dir", type=Path, default=Path("tms-data"), help="without --config: data folder"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="without --config: bind address (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=11112, help="without --config: port (default 11112)")
    serve.add_argument("--ae", default="TMS", help="without --config: AE title (default TMS)")
    serve.add_argument(
        "--peer",
        action="append",
        default=[],
        type=parse_named_peer,
        metavar="AE=HOST:PORT",
        help="without --config: a device's AE (storage SCP and event receiver); repeatable",
    )
    serve.set_defaults(_tms=_serve)

    schedule = sub.add_parser("schedule", help="store a plan and create its UPS workitems on a TMS")
    schedule.add_argument("plan", type=Path)
    schedule.add_argument("--station", required=True, help="Scheduled Station Name code value, e.g. LINAC1")
    schedule.add_argument(
        "--tms", type=parse_peer, default=parse_peer(DEFAULT_TMS), help=f"default {DEFAULT_TMS}"
    )
    schedule.add_argument("--ost", type=parse_peer, help="where the plan is stored (default: the TMS)")
    schedule.add_argument("--fractions", type=int, default=1, help="how many fractions to schedule")
    schedule.add_argument("--calling-ae", default=DEFAULT_CLIENT_AE, help=f"default {DEFAULT_CLIENT_AE}")
    schedule.set_defaults(_tms=_schedule)

    worklist = sub.add_parser("worklist", help="what is scheduled, in progress, done, canceled, and why")
    worklist.add_argument(
        "--tms", type=parse_peer, default=parse_peer(DEFAULT_TMS), help=f"default {DEFAULT_TMS}"
    )
    worklist.add_argument("--station", help="only this station")
    worklist.add_argument("--state", action="append", help="only these states (repeatable)")
    worklist.add_argument("--calling-ae", default=DEFAULT_CLIENT_AE, help=f"default {DEFAULT_CLIENT_AE}")
    worklist.set_defaults(_tms=_worklist)

    cancel = sub.add_parser(
        "cancel", help="ask the performer of a workitem to cancel it (Request UPS Cancel)"
    )
    cancel.add_argument("ups_uid")
    cancel.add_argument("--reason", default="", help="Reason For Cancellation")
    cancel.add_argument(
        "--tms", type=parse_peer, default=parse_peer(DEFAULT_TMS), help=f"default {DEFAULT_TMS}"
    )
    cancel.add_argument("--calling-ae", default=DEFAULT_CLIENT_AE, help=f"default {DEFAULT_CLIENT_AE}")
    cancel.set_defaults(_tms=_cancel)


def run(args: argparse.Namespace) -> int:
    return int(args._tms(args))


def _serve(args: argparse.Namespace) -> int:
    if args.config:
        config = load_config(args.config)
    else:
        config = TmsConfig(
            data_dir=args.data_dir,
            ae_title=args.ae,
            host=args.host,
            port=args.port,
            peers=tuple(args.peer),
        )
    server = TmsServer(config)
    port = server.start()
    where = Peer(config.ae_title, config.host, port)
    ost = f", OST {config.ost_title}@{config.host}:{server.ost_port}" if config.separate_ost else ""
    print(f"rtsim TMS {where}{ost}; data in {config.data_dir}. Ctrl-C stops it.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        server.stop()
    return 0


def _schedule(args: argparse.Namespace) -> int:
    plan = read_dataset_file(args.plan)
    created = schedule_plan(
        plan, args.station, args.fractions, tms=args.tms, ost=args.ost, calling_ae=args.calling_ae
    )
    for item in created:
        print(f"fraction {item.fraction_number}: UPS {item.ups_uid} scheduled {item.start:%Y-%m-%d %H:%M}")
    return 0


def _worklist(args: argparse.Namespace) -> int:
    entries = list_worklist(args.tms, calling_ae=args.calling_ae, station=args.station, states=args.state)
    if not entries:
        print("worklist is empty")
        return 0
    print(f"{'STATE':12s} {'PROG':>5s} {'TYPE':12s} {'STATION':8s} {'PATIENT':12s} LABEL / UPS / REASON")
    for e in entries:
        progress = "" if e.progress_percent is None else f"{e.progress_percent:.0f}%"
        print(
            f"{e.state:12s} {progress:>5s} {e.delivery_type:12s} {e.station:8s} {e.patient_id:12s} {e.label}"
        )
        print(f"{'':52s}UPS {e.uid}")
        if e.reason:
            print(f"{'':52s}why: {e.reason}")
        if e.replaces:
            print(f"{'':52s}continues UPS {e.replaces}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    status = request_cancel(args.tms, args.ups_uid, args.reason, calling_ae=args.calling_ae)
    print(f"Request UPS Cancel: status 0x{status:04X}")
    return 0 if status == 0 else 1
