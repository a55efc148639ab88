"""``rtsim scenario``: list, run (exit codes, JUnit XML, trace), seeds and the escape hatch."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

from scenarios.loader import load_scenario
from scenarios.runner import run_scenario
from simulators.cli.main import main

FAILING = """
schema_version = 1
name = "wrong-expectation"
title = "An expectation that cannot hold"
seed = 5
[[machines]]
name = "LINAC1"
model = "truebeam-millennium120"
[[plans]]
name = "p"
sample = "linac:static-mlc"
params = { patient_id = "SCN-CLI" }
[[schedule]]
plan = "p"
[[faults]]
type = "interlock"
code = "X"
at = { beam = 1, meterset_fraction = [0.2, 0.8] }
[[expect]]
type = "ups_state"
workitem = "p Fx 1"
state = "COMPLETED"
why = "a made-up reason"
[[expect]]
type = "event"
event = "InterlockRaised"
where = { code = "X" }
"""


def test_list_shows_every_library_scenario(capsys) -> None:
    assert main(["scenario", "list"]) == 0
    out = capsys.readouterr().out
    assert "linac-interlock-mid-arc" in out
    assert len(out.strip().splitlines()) >= 12


def test_run_exits_1_on_a_failed_expectation_and_writes_junit_and_trace(tmp_path, capsys) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(textwrap.dedent(FAILING), encoding="utf-8")
    junit, trace = tmp_path / "out.xml", tmp_path / "trace.jsonl"
    code = main(["scenario", "run", str(path), "--junit", str(junit), "--trace", str(trace)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  expect[0]" in out
    assert "PASS  expect[1]" in out
    assert "why it matters: a made-up reason" in out
    assert "INTERLOCK X" in out  # the timeline
    root = ET.parse(junit).getroot()
    assert root.get("tests") == "2"
    assert root.get("failures") == "1"
    failure = root.find("./testsuite/testcase/failure")
    assert "the TMS reports CANCELED, expected COMPLETED" in failure.get("message")
    entries = [json.loads(line) for line in trace.read_text().splitlines()]
    assert any(e["event"] == "InterlockRaised" for e in entries)


def test_a_broken_file_exits_2_naming_the_key(tmp_path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(FAILING).replace('code = "X"\nat', "code = 7\nat"), encoding="utf-8")
    assert main(["scenario", "run", str(path)]) == 2
    assert f"{path}: faults[0].code: expected str, got 7" in capsys.readouterr().err


def test_the_seed_draws_the_fault_time_and_the_same_seed_repeats_the_trace(tmp_path) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(textwrap.dedent(FAILING), encoding="utf-8")
    scenario = load_scenario(path)
    a = run_scenario(scenario, seed=1, work_dir=tmp_path / "a")
    b = run_scenario(scenario, seed=1, work_dir=tmp_path / "b")
    c = run_scenario(scenario, seed=2, work_dir=tmp_path / "c")

    def interlock_time(result):
        return next(e["t"] for e in result.trace if e["event"] == "InterlockRaised")

    assert a.trace == b.trace
    assert interlock_time(a) != interlock_time(c)


def test_a_plan_from_a_file_and_a_refusal(tmp_path, ihe_ro_dir) -> None:
    """The IHE-RO static beam (UNAPPROVED test data) is delivered by a machine that answers to its
    machine name and accepts unapproved plans; the same plan on a default machine is refused: CANCELED,
    no record, no continuation."""
    plan = ihe_ro_dir / "ARTI" / "Datasets" / "RTAdvanced" / "BasicStaticBeam" / "RTPlanBasicStaticBeam.dcm"
    text = f"""
    schema_version = 1
    name = "file-plan"
    [[machines]]
    name = "LINAC1"
    model = "truebeam-millennium120"
    answers_to = "IHE_V120"
    require_approved = false
    [[machines]]
    name = "LINAC2"
    model = "truebeam-millennium120"
    [[plans]]
    name = "arti"
    file = "{plan}"
    [[schedule]]
    plan = "arti"
    machine = "LINAC1"
    label = "ok"
    [[schedule]]
    plan = "arti"
    machine = "LINAC2"
    label = "refused"
    [[expect]]
    type = "ups_state"
    workitem = "ok Fx 1"
    state = "COMPLETED"
    [[expect]]
    type = "delivered_meterset"
    workitem = "ok Fx 1"
    tolerance_mu = 0.01
    [[expect]]
    type = "ups_state"
    workitem = "refused Fx 1"
    state = "CANCELED"
    [[expect]]
    type = "record_stored"
    workitem = "refused Fx 1"
    stored = false
    [[expect]]
    type = "no_continuation"
    workitem = "refused Fx 1"
    [[expect]]
    type = "never"
    event = "BeamOn"
    machine = "LINAC2"
    """
    path = tmp_path / "file-plan.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    result = run_scenario(load_scenario(path), work_dir=tmp_path / "run")
    outcomes = [e for e in result.trace if e["event"] == "outcome"]
    assert result.passed, ([r.message for r in result.results if not r.passed], outcomes)
    refused = next(e for e in result.trace if e["event"] == "outcome" and e["machine"] == "LINAC2")
    assert "Treatment Machine Name" in refused["reason"]
