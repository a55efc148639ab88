"""``rtsim console``: the training console (a terminal UI) over an embedded clinic.

The embedded TMS and virtual devices start on loopback with sample plans on their worklists; the
operator selects a workitem, prepares it, switches the beam on, interrupts, resumes; the instructor
injects faults and sets the clock. Textual is imported only when the console really starts, and only
if stdin and stdout are a terminal: without one (CI, a pipe) the command fails with a clear message.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from simulators.errors import RtsimError

SPEED_CHOICES = (1.0, 2.0, 10.0, 60.0)


class NoTerminalError(RtsimError):
    """The console needs an interactive terminal."""


def require_terminal(stdin: IO[Any] | None = None, stdout: IO[Any] | None = None) -> None:
    """Raise :class:`NoTerminalError` unless stdin and stdout are both a TTY."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    missing = [name for name, stream in (("stdin", stdin), ("stdout", stdout)) if not _isatty(stream)]
    if missing:
        raise NoTerminalError(
            f"rtsim console needs an interactive terminal, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not a TTY (CI, a pipe or a redirect?). "
            "Run it in a terminal; for headless runs use `rtsim demo` or `rtsim scenario run FILE`."
        )


def _isatty(stream: IO[Any] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _speed(text: str) -> float:
    try:
        value = float(text.lower().removesuffix("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"clock speed {text!r}: a number like 1, 2, 10 or 60") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"clock speed {text!r}: must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--linacs", type=int, default=2, help="number of virtual linacs (default 2)")
    parser.add_argument(
        "--speed", type=_speed, default=1.0, help="clock: simulated s per wall s (1, 2, 10, 60)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed for axis noise (default 7; a scenario's own seed)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("console-out"), help="folder for TMS data and records"
    )
    parser.add_argument("--scenario", type=Path, help="play a scenario file, its expectations shown live")


def run(args: argparse.Namespace) -> int:
    if args.linacs < 1:
        raise RtsimError(f"--linacs {args.linacs}: at least one linac")
    if args.scenario is not None:
        from scenarios.loader import load_scenario

        load_scenario(args.scenario)  # a broken file: ScenarioError naming the file and key, exit 2
    require_terminal()
    run_dir = args.out / datetime.now().strftime("run-%Y%m%d-%H%M%S")
    if args.scenario is not None:
        from tui.scenario_play import scenario_console  # lazy: Textual only when the console starts

        clinic, play = scenario_console(args.scenario, speed=args.speed, seed=args.seed, work_dir=run_dir)
        return run_console(clinic, scenario=play)
    from tui.local import default_machines, local_clinic

    seed = 7 if args.seed is None else args.seed
    clinic = local_clinic(run_dir, default_machines(args.linacs), speed=args.speed, seed=seed)
    return run_console(clinic)


def run_console(clinic: Any, *, scenario: Any = None) -> int:
    """Run the console app on ``clinic`` until the user quits (logging goes to the console's log)."""
    from tui.app import make_console

    app = make_console(clinic)
    app.scenario = scenario
    with _logging_into(clinic):
        app.run()
    return 0


class _ConsoleLogHandler(logging.Handler):
    def __init__(self, clinic: Any) -> None:
        super().__init__(logging.WARNING)
        self.clinic = clinic

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.clinic.log.add("log", None, f"{record.name}: {record.getMessage()}", "warning")


class _logging_into:  # noqa: N801 - a context manager used like a function
    """While the console runs, warnings go to its event log instead of garbling the screen."""

    def __init__(self, clinic: Any) -> None:
        self.handler = _ConsoleLogHandler(clinic)
        self.saved: list[logging.Handler] = []

    def __enter__(self) -> None:
        root = logging.getLogger()
        self.saved = list(root.handlers)
        for handler in self.saved:
            root.removeHandler(handler)
        root.addHandler(self.handler)
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
        workflow = logging.getLogger("simulators.dicom.tdd")
        workflow.propagate = False

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for handler in self.saved:
            root.addHandler(handler)
        logging.getLogger("simulators.dicom.tdd").propagate = True
