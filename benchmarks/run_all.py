"""Run every benchmark (``bench_*.py``) in its own process, print its output and a verdict per benchmark.

    .venv/bin/python benchmarks/run_all.py [--quick]      (also: make bench)

``--quick`` runs smaller sizes (a smoke run, not the numbers for README.md). The exit code is 0 when every
benchmark met its targets, 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# arguments per script (full size, quick); a benchmark not listed runs with its own defaults
ARGUMENTS: dict[str, tuple[list[str], list[str]]] = {
    "bench_plan_simulation.py": (["--repeat", "9"], ["--repeat", "5"]),  # a median needs a few runs
    "bench_fraction_overhead.py": (["--fractions", "20"], ["--fractions", "5"]),
    "bench_many_devices.py": (
        ["--devices", "20", "--stations", "10", "--fractions", "200"],
        ["--devices", "4", "--stations", "2", "--fractions", "20"],
    ),
}


def benchmarks() -> list[str]:
    """Every ``bench_*.py`` beside this file, in name order."""
    return sorted(path.name for path in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = parser.parse_args(argv)
    verdicts: list[tuple[str, int, float]] = []
    for script in benchmarks():
        full, quick = ARGUMENTS.get(script, ([], []))
        command = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"$ {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(command))}", flush=True)
        started = time.monotonic()
        proc = subprocess.run(command, check=False, timeout=1800)
        verdicts.append((script, proc.returncode, time.monotonic() - started))
        print(flush=True)
    print("summary:")
    for script, code, wall_s in verdicts:
        print(f"  {script:30s} {'PASS' if code == 0 else 'FAIL'}  ({wall_s:.0f} s)")
    return 0 if all(code == 0 for _, code, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
