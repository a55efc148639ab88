"""``rtsim sample-plan``: lists linac and brachy samples, writes a plan the deliver command accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom

from simulators.cli.main import main


def test_list_names_linac_and_brachy_samples(capsys) -> None:
    assert main(["sample-plan", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("vmat", "static-mlc", "hdr-cervix", "hdr-prostate", "hdr-cylinder", "pdr-cervix"):
        assert name in out


def test_write_then_deliver_offline(tmp_path: Path, capsys) -> None:
    plan = tmp_path / "plan.dcm"
    assert main(["sample-plan", "hdr-cylinder", "--out", str(plan)]) == 0
    assert pydicom.dcmread(plan).BrachyTreatmentType == "HDR"
    out = tmp_path / "out"
    code = main(
        [
            "deliver",
            str(plan),
            "--machine",
            "microselectron-v3",
            "--out",
            str(out),
            "--start",
            "2025-01-06T09:00",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unit_kind"] == "channel"
    assert summary["units"][0]["delivered_meterset"] == 114.5
    assert summary["afterloader"]["decay_correction_factor"] == 1.0
    assert "Channel 1 'CYLINDER 30': 114.50 of 114.50 s" in capsys.readouterr().out


def test_unknown_name_and_missing_out(capsys) -> None:
    assert main(["sample-plan", "hdr-lung", "--out", "x.dcm"]) == 2
    assert "no sample plan 'hdr-lung'; available: static-mlc" in capsys.readouterr().err
    assert main(["sample-plan", "hdr-cervix"]) == 2
    assert "--out" in capsys.readouterr().err


def test_linac_sample_machine_name(tmp_path: Path) -> None:
    plan = tmp_path / "vmat.dcm"
    assert main(["sample-plan", "vmat", "--out", str(plan), "--machine-name", "IHE_V120"]) == 0
    assert pydicom.dcmread(plan).BeamSequence[0].TreatmentMachineName == "IHE_V120"
