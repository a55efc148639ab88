"""``rtsim deliver`` on every IHE-RO plan, through ``main([...])`` as a user runs it.

The machine is the bundled ``truebeam-millennium120`` answering to ``IHE_V120`` (the name the ARTI/TPPC
photon plans ask for), with ``--allow-unapproved`` (every ARTI/TPPC plan is UNAPPROVED). Deliverable
plans write one record that passes ``dciodvfy`` and a summary.json with the design.md §5 fields; refused
ones exit 3 and write nothing (the reasons are checked in tests/simulators/plans/test_ihe_ro_plans.py;
here: the CLI's contract). A truncated file exits 2 with a message naming it. No traceback, ever.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from dciodvfy import assert_dciodvfy_clean
from rtsim_testdata import IHE_RO_DIR, ihe_ro_plan_paths

from simulators.cli.main import main

ARTI = "ARTI/Datasets/RTAdvanced"
TPPC = "TPPC/Datasets/TPPC"
ION = "TDW-II/Datasets/TDW/UPSDataIonPlan/RTPLAN_1.2.246.352.71.5.581409048390.52.20161021091702.dcm"
E160 = "Treatment Machine Name (300A,00B2) is 'IHE_E160'"
CONE = "Applicator ID (300A,0108) '20mm Cone'"
# plan -> a fragment of the refusal printed on stderr
REFUSED: dict[str, str] = {
    f"{ARTI}/MotorizedWedgeBeam/RTPlanMotorizedWedgeBeam.dcm": E160,
    f"{TPPC}/MotorizedWedgeBeam/RTPlanMotorizedWedgeBeam.dcm": E160,
    f"{ARTI}/StereotacticArcBeam/RTPlanStereotacticArcBeam.dcm": CONE,
    f"{ARTI}/StereotacticBeam/RTPlanStereotacticBeam.dcm": CONE,
    f"{TPPC}/PhotonApplicatorArcBeam/RTPlanPhotonApplicatorArcBeam.dcm": CONE,
    f"{TPPC}/PhotonApplicatorBeam/RTPlanPhotonApplicatorBeam.dcm": CONE,
    f"{TPPC}/VirtualWedgeBeam/RTPlanVirtualWedgeBeam.dcm": "Wedge Position (300A,0118): 2 wedges IN at once",
    "TDW-II/Datasets/TDW/UPSData/RTPlan.dcm": "Treatment Machine Name (300A,00B2) is 'CDMS-LAB-CK'",
    ION: "RT Ion Plan",
}
SUMMARY_KEYS = {"plan_uid", "plan_label", "machine_id", "units", "record_file", "termination_status"}
UNIT_KEYS = {
    "number",
    "name",
    "specified_meterset",
    "delivered_meterset",
    "beam_on_time_s",
    "total_time_s",
    "termination_status",
    "termination_code",
    "limiting_axis_share",
}
PLANS = [str(p.relative_to(IHE_RO_DIR)) for p in ihe_ro_plan_paths()]


def deliver(plan: Path, out: Path, *extra: str) -> int:
    args = ["deliver", str(plan), "--machine", "truebeam-millennium120", "--out", str(out), *extra]
    return main([*args, "--machine-name", "IHE_V120", "--allow-unapproved", "--seed", "3"])


def test_the_refusal_table_names_real_files() -> None:
    assert len(PLANS) == 30
    assert set(REFUSED) <= set(PLANS)


@pytest.mark.parametrize("relative", PLANS)
def test_deliver_every_ihe_ro_plan(relative: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = deliver(IHE_RO_DIR / relative, out)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    if relative in REFUSED:
        assert code == 3, captured.err
        assert REFUSED[relative] in captured.err
        assert captured.err.startswith("rtsim: error: ")
        assert not out.exists() or not any(out.iterdir()), "a refused plan must write nothing"
        return
    assert code == 0, captured.err
    records = sorted(out.glob("RTRECORD_*.dcm"))
    assert len(records) == 1
    assert_dciodvfy_clean(records[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["record_file"] == str(records[0])
    assert summary["termination_status"] == "NORMAL"
    record = pydicom.dcmread(records[0])
    plan = pydicom.dcmread(IHE_RO_DIR / relative, force=True)
    assert (
        summary["plan_uid"]
        == plan.SOPInstanceUID
        == record.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
    )
    assert summary["machine_id"] == "truebeam-millennium120"
    assert [u["number"] for u in summary["units"]] == [int(b.BeamNumber) for b in plan.BeamSequence]
    for unit in summary["units"]:
        assert unit.keys() >= UNIT_KEYS
        assert unit["delivered_meterset"] == pytest.approx(unit["specified_meterset"], abs=1e-3)
        assert 0 < unit["beam_on_time_s"] <= unit["total_time_s"]
        assert sum(unit["limiting_axis_share"].values()) == pytest.approx(1.0, abs=1e-3)  # rounded
    # the human summary names every beam and where the summary went
    assert f"summary: {out / 'summary.json'}" in captured.out


def test_pydicom_rtplan_is_refused_for_machine_and_dose_rate(
    rtplan_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["deliver", str(rtplan_path), "--machine", "truebeam-millennium120", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "Treatment Machine Name (300A,00B2) is 'unit001'" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_truncated_plan_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = IHE_RO_DIR / ARTI / "IMATVMATBeam" / "RTPlanIMATVMATBeam.dcm"
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    out = tmp_path / "out"
    assert deliver(truncated, out) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"rtsim: error: {truncated}")
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"", "empty"), (b"not DICOM at all" * 10, "")],
)
def test_empty_or_garbage_files_exit_2(
    content: bytes, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(content)
    out = tmp_path / "out"
    assert deliver(bad, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rtsim: error: {bad}")
    assert fragment in err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_missing_file_and_an_unknown_machine_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deliver(tmp_path / "nope.dcm", tmp_path / "out") == 2
    assert "no such file" in capsys.readouterr().err
    plan = IHE_RO_DIR / ARTI / "BasicStaticBeam" / "RTPlanBasicStaticBeam.dcm"
    assert main(["deliver", str(plan), "--machine", "no-such-machine", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no-such-machine" in err
    assert "Traceback" not in err
