"""``rtsim demo`` end to end, as a user runs it: a subprocess with a timeout; the outcome lines are checked.

The demo schedules sample plans on its embedded TMS through DICOM; the linac delivers them: a static MLC
field and a step-and-shoot IMRT field complete, the VMAT fraction is interrupted by the door and its
CONTINUATION delivers the rest, and a plan for another machine is refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from dciodvfy import assert_dciodvfy_clean
from rtsim_testdata import REPO_ROOT

OUTCOME = re.compile(r"^  (?P<label>.+?): (?P<state>COMPLETED|CANCELED)(?P<rest>.*)$", re.MULTILINE)
MU = re.compile(r", (?P<delivered>[\d.]+) of (?P<specified>[\d.]+) MU")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "simulators", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    return proc, out


def outcomes(stdout: str) -> dict[str, tuple[str, str]]:
    section = stdout.split("\nOutcomes:\n", 1)[1].split("\nTMS worklist", 1)[0]
    return {m["label"]: (m["state"], m["rest"]) for m in OUTCOME.finditer(section)}


def delivered_mu(rest: str) -> tuple[float, float]:
    match = MU.search(rest)
    assert match, rest
    return float(match["delivered"]), float(match["specified"])


def test_demo_runs_the_whole_loop(demo: tuple[subprocess.CompletedProcess, Path]) -> None:
    proc, out = demo
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    stdout = proc.stdout
    for step in ("RO-58", "RO-59", "RO-60", "RO-61", "RO-62", "RO-63", "RO-64", "RO-65"):
        assert step in stdout, f"the demo never showed {step}"
    found = outcomes(stdout)

    assert found["static-mlc Fx 1/5"][0] == "COMPLETED"
    assert delivered_mu(found["static-mlc Fx 1/5"][1]) == (120.0, 120.0)
    assert found["step-and-shoot Fx 1/5"][0] == "COMPLETED"
    assert delivered_mu(found["step-and-shoot Fx 1/5"][1]) == (150.0, 150.0)

    # the door interrupts the VMAT arc; the TMS schedules the CONTINUATION, which delivers the rest
    state, rest = found["vmat Fx 1/5"]
    assert state == "CANCELED"
    assert "termination MACHINE code DOOR" in rest
    first, planned = delivered_mu(rest)
    assert 0 < first < planned
    state, rest = found["vmat Fx 1/5 (continuation)"]
    assert state == "COMPLETED"
    second, remaining = delivered_mu(rest)
    assert second == pytest.approx(remaining, abs=0.05)
    assert first + second == pytest.approx(planned, abs=0.15)

    state, rest = found["other-machine Fx 1/5"]
    assert state == "CANCELED"
    assert "plan refused by the device" in rest
    assert "Treatment Machine Name (300A,00B2) is 'OtherLinac'" in rest
    assert MU.search(rest) is None  # nothing delivered, no record

    worklist = stdout.split("\nTMS worklist", 1)[1]
    assert re.search(r"COMPLETED\s+100%\s+CONTINUATION\s+vmat Fx 1/5 \(continuation\)", worklist)
    assert str(out) in stdout.splitlines()[-1]


def test_demo_records_exist_and_pass_dciodvfy(demo: tuple[subprocess.CompletedProcess, Path]) -> None:
    proc, out = demo
    assert proc.returncode == 0, proc.stderr
    paths = [Path(p) for p in re.findall(r"^\s+record: (\S+\.dcm)$", proc.stdout, re.MULTILINE)]
    assert len(paths) >= 4  # static, step-and-shoot, interrupted VMAT, its continuation
    for path in paths:
        assert path.is_file()
        assert out in path.parents
    for path in paths:
        assert_dciodvfy_clean(path)
