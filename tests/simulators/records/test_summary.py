"""summary.json content and the CLI's short text summary."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_beams_record import deliver, make_beam, make_machine, make_plan, vmat_beam

from simulators.core.results import TerminationStatus
from simulators.plans.model import BeamTask
from simulators.records.summary import build_summary, format_human_summary, write_summary


def test_summary_of_a_normal_session_has_the_design_fields() -> None:
    plan = make_plan(make_beam(1, "Static"), vmat_beam(2))
    result = deliver(plan, seed=42)
    summary = build_summary(plan, result, Path("out/record.dcm"), make_machine())

    assert summary["schema_version"] == 1
    assert (summary["plan_uid"], summary["plan_label"]) == (plan.identity.sop_instance_uid, "TEST")
    assert summary["machine_id"] == "varian-truebeam"
    assert summary["machine"]["model_name"] == "TrueBeam"
    assert (summary["termination_status"], summary["termination_code"]) == ("NORMAL", "")
    assert summary["session_start"] == "2026-03-02T08:30:00"
    assert summary["seed"] == 42
    assert summary["record_file"] == "out/record.dcm"
    assert summary["total_time_s"] == pytest.approx(40.0)  # 5 s setup + 10 s, 5 s setup + 20 s
    assert summary["beam_on_time_s"] == pytest.approx(30.0)
    assert summary["unit_kind"] == "beam"
    arc = summary["units"][1]
    assert arc == {
        "number": 2,
        "name": "Arc",
        "delivered": True,
        "meterset_unit": "MU",
        "specified_meterset": 200.0,
        "plan_meterset": 200.0,
        "delivered_meterset": 200.0,
        "beam_on_time_s": 20.0,
        "total_time_s": 25.0,
        "termination_status": "NORMAL",
        "termination_code": "",
        "limiting_axis": "dose",
        "limiting_axis_share": {"dose": 0.75, "gantry": 0.25},
    }
    assert json.loads(json.dumps(summary)) == summary  # plain JSON types only


def test_summary_of_an_interrupted_session_and_its_text() -> None:
    plan = make_plan(vmat_beam(1), make_beam(2, "Static"))
    result = deliver(plan, stop=(1, 65.0, TerminationStatus.MACHINE, "DOOR"))
    summary = build_summary(plan, result, None, make_machine())
    first, second = summary["units"]
    assert (first["termination_status"], first["termination_code"]) == ("MACHINE", "DOOR")
    assert first["delivered_meterset"] == 65.0
    assert second["delivered"] is False
    assert summary["record_file"] is None
    text = format_human_summary(summary)
    assert text.splitlines() == [
        "Plan TEST on varian-truebeam: MACHINE (DOOR)",
        "  Beam 1 'Arc': 65.00 of 200.00 MU, beam on 6.5 s, total 11.5 s, limited by dose 75%, gantry 25%"
        " [MACHINE (DOOR)]",
        "  Beam 2 'Static': not delivered",
        "Session: 0 of 2 beams complete, beam on 6.5 s, total 11.5 s; record: none written",
    ]


def test_continuation_summary_gives_session_target_and_plan_meterset() -> None:
    plan = make_plan(vmat_beam(1))
    task = BeamTask(1, delivery_type="CONTINUATION", start_meterset_mu=65.0, end_meterset_mu=200.0)
    summary = build_summary(plan, deliver(plan, [task]), "r.dcm", make_machine())
    unit = summary["units"][0]
    assert (unit["specified_meterset"], unit["plan_meterset"], unit["delivered_meterset"]) == (
        135.0,
        200.0,
        135.0,
    )


def test_human_summary_of_a_normal_session() -> None:
    plan = make_plan(make_beam(1, "Static"), vmat_beam(2))
    text = format_human_summary(build_summary(plan, deliver(plan), "out/record.dcm", make_machine()))
    assert text.splitlines() == [
        "Plan TEST on varian-truebeam: NORMAL",
        "  Beam 1 'Static': 100.00 of 100.00 MU, beam on 10.0 s, total 15.0 s,"
        " limited by dose 75%, gantry 25%",
        "  Beam 2 'Arc': 200.00 of 200.00 MU, beam on 20.0 s, total 25.0 s, limited by dose 75%, gantry 25%",
        "Session: 2 of 2 beams complete, beam on 30.0 s, total 40.0 s; record: out/record.dcm",
    ]


def test_long_times_are_given_in_minutes() -> None:
    plan = make_plan(make_beam(1, "Long", meterset_mu=900.0))
    text = format_human_summary(build_summary(plan, deliver(plan), "r.dcm", make_machine()))
    assert "beam on 1 min 30.0 s, total 1 min 35.0 s" in text


def test_write_summary_round_trips(tmp_path: Path) -> None:
    plan = make_plan(make_beam(1, "Static"))
    summary = build_summary(plan, deliver(plan), tmp_path / "record.dcm", make_machine())
    path = write_summary(tmp_path / "sub" / "summary.json", summary)
    assert json.loads(path.read_text(encoding="utf-8")) == summary
    assert not list(path.parent.glob("*.partial"))


def test_negligible_limiting_shares_are_left_out_of_the_text() -> None:
    plan = make_plan(make_beam(1, "Static"))
    result = deliver(plan)
    unit = replace(result.units[0], limiting_axis_share={"mlc": 0.998, "none": 0.002})
    summary = build_summary(plan, replace(result, units=(unit,)), "r.dcm", make_machine())
    assert summary["units"][0]["limiting_axis"] == "mlc"
    assert "limited by mlc 100%," not in format_human_summary(summary)
    assert "limited by mlc 100%" in format_human_summary(summary)
