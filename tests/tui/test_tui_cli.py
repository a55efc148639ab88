"""``rtsim console`` and ``rtsim device run --console`` without a terminal: a clear message, exit 2."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from simulators.cli.console import NoTerminalError, require_terminal


@pytest.mark.parametrize(
    "argv",
    [
        ["console"],
        [
            "device",
            "run",
            "--machine",
            "truebeam-millennium120",
            "--station",
            "L1",
            "--tms",
            "TMS@127.0.0.1:1",
            "--console",
        ],
    ],
)
def test_console_without_a_terminal_fails_clearly(argv, tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulators.cli.main", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 2
    assert "needs an interactive terminal" in out.stderr
    assert "not a TTY" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_require_terminal_names_the_missing_stream() -> None:
    require_terminal(_Tty(), _Tty())
    with pytest.raises(NoTerminalError, match=r"but stdout is not a TTY"):
        require_terminal(_Tty(), io.StringIO())
    with pytest.raises(NoTerminalError, match=r"stdin and stdout are not a TTY"):
        require_terminal(io.StringIO(), io.StringIO())


def test_console_scenario_file_errors_name_file_and_key(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\nname = "x"\n[[machines]]\nnam = "L"\n', encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "simulators.cli.main", "console", "--scenario", str(bad)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 2
    assert f"{bad}: machines[0].nam: unknown key" in out.stderr
    assert "Traceback" not in out.stderr
