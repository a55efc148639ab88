"""``rtsim machines`` and ``rtsim tms schedule/worklist/cancel`` through ``main([...])``.

The TMS commands run against a real embedded :class:`TmsServer` on 127.0.0.1 (ephemeral port); what the
CLI prints is checked against the TMS's own store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from machine_models import available_models
from simulators.cli.main import main
from simulators.dicom.tms.config import DEFAULT_CLIENT_AE, TmsConfig
from simulators.dicom.tms.server import TmsServer
from simulators.plans.samples.linac import sample_linac_plan


def test_machines_lists_every_bundled_model_with_its_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machines"]) == 0
    out = capsys.readouterr().out
    ids = available_models()
    assert {"truebeam-millennium120", "truebeam-hd120", "versahd-agility"} <= set(ids)
    for model_id in ids:
        assert re.search(rf"^{re.escape(model_id)}: ", out, re.MULTILINE), model_id
    assert "MLCX 60 pairs" in out  # Millennium 120 and HD120
    assert "max leaf speed 25 mm/s" in out
    assert "6X 600" in out


def test_machines_one_model_and_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machines", "versahd-agility"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("versahd-agility: ")
    assert "truebeam" not in out
    assert main(["machines", "no-such-model"]) == 2
    captured = capsys.readouterr()
    assert "no-such-model" in captured.err
    assert "Traceback" not in captured.err


@pytest.fixture
def tms(tmp_path: Path) -> Iterator[TmsServer]:
    server = TmsServer(
        TmsConfig(data_dir=tmp_path / "tms", ae_title="TMS", port=0, allowed_ae_titles=(DEFAULT_CLIENT_AE,))
    )
    server.start()
    yield server
    server.stop()


def test_tms_schedule_then_worklist_then_cancel(
    tms: TmsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "plan.dcm"
    plan = sample_linac_plan("vmat", patient_id="RTSIM-CLI", fractions=5)
    plan.save_as(plan_path, enforce_file_format=True)
    address = f"TMS@127.0.0.1:{tms.port}"

    code = main(
        ["tms", "schedule", str(plan_path), "--station", "LINAC1", "--tms", address, "--fractions", "3"]
    )
    assert code == 0
    out = capsys.readouterr().out
    uids = re.findall(r"^fraction (\d): UPS ([\d.]+) scheduled", out, re.MULTILINE)
    assert [n for n, _ in uids] == ["1", "2", "3"]
    assert tms.ups is not None
    assert {row.uid for row in tms.ups.index()} == {uid for _, uid in uids}
    assert {row.state for row in tms.ups.index()} == {"SCHEDULED"}

    assert main(["tms", "worklist", "--tms", address]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].split()[:3] == ["STATE", "PROG", "TYPE"]
    assert listing.count("SCHEDULED") == 3
    assert listing.count("RTSIM-CLI") == 3
    for _, uid in uids:
        assert f"UPS {uid}" in listing

    assert main(["tms", "worklist", "--tms", address, "--station", "OTHER"]) == 0
    assert "worklist is empty" in capsys.readouterr().out

    # a SCHEDULED workitem is canceled at once by a Request UPS Cancel
    assert main(["tms", "cancel", uids[0][1], "--tms", address, "--reason", "patient ill"]) == 0
    assert "status 0x0000" in capsys.readouterr().out
    assert main(["tms", "worklist", "--tms", address, "--state", "CANCELED"]) == 0
    canceled = capsys.readouterr().out
    assert canceled.count("CANCELED") == 1
    assert f"UPS {uids[0][1]}" in canceled


def test_tms_schedule_errors_are_clear(
    tms: TmsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"TMS@127.0.0.1:{tms.port}"
    assert main(["tms", "schedule", str(tmp_path / "missing.dcm"), "--station", "L1", "--tms", address]) == 2
    err = capsys.readouterr().err
    assert "missing.dcm" in err
    assert "Traceback" not in err
    plan_path = tmp_path / "plan.dcm"
    sample_linac_plan("static-mlc", fractions=2).save_as(plan_path, enforce_file_format=True)
    code = main(["tms", "schedule", str(plan_path), "--station", "L1", "--tms", address, "--fractions", "5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "plans 2 fraction(s)" in err
    assert "Traceback" not in err
    assert tms.ups is not None
    assert tms.ups.index() == []
