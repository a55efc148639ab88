"""``rtsim deliver``: one RT Plan in, one fraction delivered offline, record + summary.json out."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from machine_models import load_model
from simulators.devices.session import DeliverySession, SessionRequest
from simulators.errors import PlanRefusedError, RtsimError
from simulators.plans.dicom_reader import read_dataset_file
from simulators.records.common import write_record
from simulators.records.summary import build_summary, format_human_summary, write_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", type=Path, help="RT Plan file (DICOM)")
    parser.add_argument("--machine", required=True, help="bundled model id or path to a model TOML file")
    parser.add_argument("--out", type=Path, required=True, help="folder for the record and summary.json")
    parser.add_argument("--seed", type=int, default=0, help="seed for axis noise (default 0)")
    parser.add_argument(
        "--machine-name",
        help="the Treatment Machine Name this machine answers to (default: the model's)",
    )
    parser.add_argument(
        "--allow-unapproved",
        action="store_true",
        help="deliver plans whose Approval Status is not APPROVED (a real console refuses them)",
    )
    parser.add_argument(
        "--start",
        type=datetime.fromisoformat,
        help="treatment date/time of simulated 0 s, ISO format (default: now)",
    )
    parser.add_argument("--operator", default="rtsim", help="Operators' Name written to the record")


def run(args: argparse.Namespace) -> int:
    machine = load_model(args.machine)
    dataset = read_dataset_file(args.plan)
    session = DeliverySession(
        SessionRequest(
            plan_dataset=dataset,
            machine=machine,
            source=str(args.plan),
            answers_to=args.machine_name,
            seed=args.seed,
            session_start=args.start,
            require_approved=not args.allow_unapproved,
            operator_name=args.operator,
        )
    )
    outcome = session.run()
    if outcome.refused:
        raise PlanRefusedError(outcome.refused_reasons)
    if outcome.record is None or outcome.result is None or outcome.plan is None:
        raise RtsimError(f"{args.plan}: delivery produced no record")
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / f"RTRECORD_{outcome.record.SOPInstanceUID}.dcm"
    write_record(outcome.record, record_path)
    summary = build_summary(outcome.plan, outcome.result, record_path, machine)
    write_summary(args.out / "summary.json", summary)
    print(format_human_summary(summary))
    print(f"summary: {args.out / 'summary.json'}")
    return 0 if outcome.result.completed else 4
