"""Issue 5: the whole scenario library in fast mode, one process, target < 60 s wall time in all.

Each bundled scenario runs as ``rtsim scenario run`` would (embedded TMS and devices on loopback, every
DICOM step real, expectations checked over DICOM). Printed per scenario: wall time, simulated machine time,
the ratio simulated/wall, and whether its expectations passed; then the total against the target.

    .venv/bin/python benchmarks/bench_scenarios.py
"""

from __future__ import annotations

import logging
import sys
import time

from _common import verdict

from scenarios.loader import library_paths, load_scenario
from scenarios.runner import run_scenario

TARGET_TOTAL_S = 60.0


def simulated_s(trace: list[dict]) -> float:
    """The longest machine clock reached in the trace (sessions of one machine follow each other)."""
    return max((e["t"] for e in trace if e["machine"] != "TMS"), default=0.0)


def main() -> int:
    logging.disable(logging.CRITICAL)
    started = time.monotonic()
    all_passed = True
    print(f"{'scenario':44s} {'wall s':>7s} {'sim s':>8s} {'sim/wall':>9s}  result")
    for path in library_paths():
        scenario = load_scenario(path)
        result = run_scenario(scenario)
        sim = simulated_s(result.trace)
        all_passed &= result.passed
        ratio = sim / result.wall_s if result.wall_s > 0 else float("inf")
        print(f"{scenario.name:44s} {result.wall_s:7.2f} {sim:8.1f} {ratio:8.0f}x  {verdict(result.passed)}")
    total = time.monotonic() - started
    ok = total < TARGET_TOTAL_S
    print(f"\nwhole library: {total:.1f} s wall (target < {TARGET_TOTAL_S:.0f} s): {verdict(ok)}")
    print(f"every scenario's expectations: {verdict(all_passed)}")
    return 0 if ok and all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
