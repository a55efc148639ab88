"""The ``rtsim`` command: a thin dispatcher over one small module per subcommand."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import import_module

from machine_models.errors import ModelError
from simulators.errors import RtsimError

# subcommand -> module in simulators.cli; each module has add_arguments(parser) and run(args) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole loop on this machine: embedded TMS, devices, sample plans"),
    "machines": ("machines", "list the bundled machine models with their key limits"),
    "deliver": ("deliver", "deliver one RT Plan offline: record + summary.json out"),
    "tms": ("tms", "the embedded TMS: serve, schedule, worklist"),
    "device": ("device", "run a virtual device against a TMS (IHE-RO TDW-II)"),
    "scenario": (
        "scenario",
        "failure-injection scenarios: list, run FILE [--junit out.xml] [--tms AE@host:port]",
    ),
    "console": ("console", "the training console: a terminal UI over an embedded clinic"),
    "sample-plan": ("sample_plan", "write a sample RT Plan (linac or brachy): NAME --out plan.dcm"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtsim",
        description="Virtual radiotherapy treatment delivery devices that talk DICOM to a TMS.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log DICOM traffic and engine events")
    parser.add_argument("--debug", action="store_true", help="show a traceback on unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = import_module(f"simulators.cli.{module_name}")
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rtsim`` with ``argv`` (default: the process arguments); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except (RtsimError, ModelError) as error:
        print(f"rtsim: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("rtsim: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: say so plainly, keep the traceback behind --debug
        if args.debug:
            raise
        print(
            f"rtsim: internal error: {type(error).__name__}: {error} (run with --debug for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
