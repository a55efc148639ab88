"""``rtsim sample-plan NAME --out plan.dcm``: write one of the bundled sample RT Plans (linac or brachy).

The samples are synthetic but shaped like planning-system output and ``dciodvfy``-clean: linac plans for a
Millennium 120 TrueBeam (:mod:`simulators.plans.samples.linac`) and brachy plans for the bundled
afterloaders (:mod:`simulators.plans.samples.brachy`). ``rtsim sample-plan --list`` names them all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydicom.dataset import Dataset

from simulators.errors import RtsimError
from simulators.plans.samples.brachy import SAMPLE_BRACHY_PLANS, sample_brachy_plan
from simulators.plans.samples.linac import SAMPLE_PLANS, sample_linac_plan

DESCRIPTIONS = {
    "static-mlc": "linac: one static MLC field (TrueBeam1, Millennium 120)",
    "step-and-shoot": "linac: step-and-shoot IMRT field",
    "vmat": "linac: one VMAT arc",
    "hdr-cervix": "afterloader HDR: tandem and ring, 2 channels, 7 Gy x 4 (mSelectronHDR)",
    "hdr-prostate": "afterloader HDR: 16 interstitial prostate needles, 15 Gy x 1",
    "hdr-cylinder": "afterloader HDR: single-channel vaginal cylinder, 7 Gy x 3",
    "pdr-cervix": "afterloader PDR: tandem and ring, 24 hourly pulses (mSelectronPDR)",
}


def sample_names() -> list[str]:
    """Every sample plan name, linac first."""
    return [*SAMPLE_PLANS, *SAMPLE_BRACHY_PLANS]


def make_sample(name: str, machine_name: str | None = None) -> Dataset:
    """The sample plan ``name`` (RtsimError listing the names if unknown)."""
    if name in SAMPLE_PLANS:
        return sample_linac_plan(name, machine_name=machine_name or "TrueBeam1")
    if name in SAMPLE_BRACHY_PLANS:
        return sample_brachy_plan(name, machine_name=machine_name)
    raise RtsimError(f"no sample plan {name!r}; available: {', '.join(sample_names())}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="sample plan name (see --list)")
    parser.add_argument("--out", type=Path, help="file to write (e.g. plan.dcm)")
    parser.add_argument("--list", action="store_true", help="list the sample plans and exit")
    parser.add_argument(
        "--machine-name", help="Treatment Machine Name written into the plan (default: the bundled model's)"
    )


def run(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        for name in sample_names():
            print(f"{name:16} {DESCRIPTIONS.get(name, '')}")
        return 0 if args.list else 2
    if args.out is None:
        raise RtsimError("give the file to write with --out, e.g. sample-plan hdr-cervix --out plan.dcm")
    ds = make_sample(args.name, args.machine_name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(args.out, enforce_file_format=True)
    print(f"{args.name}: RT Plan {ds.RTPlanLabel!r} written to {args.out}")
    return 0
