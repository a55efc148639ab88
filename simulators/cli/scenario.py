"""``rtsim scenario list | run FILE...``: scripted failure-injection scenarios (docs/scenarios.md).

``run`` prints a timeline (simulated time, machine, what happened) and a pass/fail table of the
expectations; the exit code is 0 only if every expectation of every scenario passed (1 otherwise, 2 for a
scenario file that cannot be used). ``--junit`` writes a JUnit XML report; ``--trace`` the JSON-lines trace;
``--tms AE@host:port`` runs against your own TMS instead of the embedded one.
"""

from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path

from simulators.dicom.peers import parse_peer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="scenario_command", metavar="ACTION")
    sub.add_parser("list", help="the bundled scenarios, one line each")
    faults = sub.add_parser("faults", help="the fault library and the expectation types")
    faults.set_defaults(scenario_command="faults")
    run = sub.add_parser("run", help="run scenario files (or bundled scenario names)")
    run.add_argument("files", nargs="+", help="scenario TOML files, or names from `rtsim scenario list`")
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    run.add_argument("--trace", type=Path, help="write the trace (JSON lines) here (one file: this path)")
    run.add_argument("--tms", help="your TMS as AE@host:port (default: the embedded TMS)")
    run.add_argument("--ost", help="your OST as AE@host:port (default: the TMS)")
    run.add_argument(
        "--device-port", type=int, default=0, help="devices listen on this port and up (with --tms)"
    )
    run.add_argument(
        "--calling-ae", default="RTSIM", help="AE title for scheduling and checks (default RTSIM)"
    )
    run.add_argument("--out", type=Path, help="keep the run's TMS data and records in this folder")
    run.add_argument("--brief", action="store_true", help="timeline without the DICOM operations")


def run(args: argparse.Namespace) -> int:
    from scenarios.loader import library_paths, load_scenario

    command = getattr(args, "scenario_command", None)
    if command == "list":
        for path in library_paths():
            scenario = load_scenario(path)
            print(f"{scenario.name:42s} {scenario.title}")
        return 0
    if command == "faults":
        return _print_library()
    if command != "run":
        print("usage: rtsim scenario {list,faults,run} ... (rtsim scenario -h)")
        return 2
    scenarios = [load_scenario(f) for f in args.files]  # every file checked before anything runs
    return _run_all(scenarios, args)


def _print_library() -> int:
    from scenarios.expectations import EXPECTATIONS
    from scenarios.faults import FAULTS
    from scenarios.params import describe_params

    print("Faults (type = ...):")
    for name, cls in sorted(FAULTS.items()):
        print(f"  {name:20s} [{cls.kind}] {cls.summary}")
        params = describe_params(cls)
        if params:
            print(f"  {'':20s} {params}")
    print("\nExpectations (type = ...):")
    for name, cls in sorted(EXPECTATIONS.items()):
        print(f"  {name:20s} {cls.summary}")
        print(f"  {'':20s} {describe_params(cls, skip=('why',))}")
    return 0


def _run_all(scenarios, args: argparse.Namespace) -> int:
    quiet = (
        () if args.verbose else ("simulators.dicom.tdd.workflow", "simulators.dicom.tdd.retry", "pynetdicom")
    )
    levels = {name: logging.getLogger(name).level for name in quiet}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return _run_quietly(scenarios, args)
    finally:  # main() may be called in-process (tests, the console): leave logging as it was
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _run_quietly(scenarios, args: argparse.Namespace) -> int:
    from scenarios.junit import write_junit
    from scenarios.runner import run_scenario
    from scenarios.trace import timeline, to_jsonl

    tms = parse_peer(args.tms) if args.tms else None
    ost = parse_peer(args.ost) if args.ost else None
    results = []
    for index, scenario in enumerate(scenarios):
        print(f"== {scenario.name}: {scenario.title}")
        if scenario.tests:
            print(textwrap.fill(scenario.tests, 100, initial_indent="   ", subsequent_indent="   "))
        work_dir = args.out / scenario.name if args.out else None
        result = run_scenario(
            scenario,
            seed=args.seed,
            work_dir=work_dir,
            tms=tms,
            ost=ost,
            device_port_base=args.device_port,
            calling_ae=args.calling_ae,
        )
        results.append(result)
        print(f"\n   seed {result.seed}; timeline (simulated seconds):")
        print(textwrap.indent(timeline(result.trace, include_dicom=not args.brief), "  "))
        print("\n   expectations:")
        for r in result.results:
            mark = "PASS" if r.passed else "FAIL"
            print(f"   {mark}  {r.key:10s} {r.description}")
            print(f"         {r.message}")
            if not r.passed and r.why:
                print(
                    textwrap.fill(
                        f"why it matters: {r.why}",
                        100,
                        initial_indent="         ",
                        subsequent_indent="         ",
                    )
                )
        verdict = "PASSED" if result.passed else "FAILED"
        passed = sum(r.passed for r in result.results)
        print(f"\n   {scenario.name}: {verdict} ({passed}/{len(result.results)}) in {result.wall_s:.1f} s\n")
        if args.trace:
            path = (
                args.trace
                if len(scenarios) == 1
                else args.trace.with_name(f"{args.trace.stem}-{index}-{scenario.name}.jsonl")
            )
            path.write_text(to_jsonl(result.trace), encoding="utf-8")
    if args.junit:
        write_junit(args.junit, results)
    if len(results) > 1:
        print("summary:")
        for result in results:
            print(f"  {'PASS' if result.passed else 'FAIL'}  {result.scenario.name}")
    return 0 if all(r.passed for r in results) else 1
