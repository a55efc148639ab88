"""The scenario format: what loads, and errors that name the file and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scenarios.errors import ScenarioError
from scenarios.faults import FAULTS
from scenarios.loader import load_scenario
from scenarios.triggers import ControlPointTrigger, MetersetTrigger, OperationTrigger, TimeTrigger

HEAD = """
schema_version = 1
name = "t"
[[machines]]
name = "LINAC1"
model = "truebeam-millennium120"
[[plans]]
name = "p"
sample = "linac:static-mlc"
[[schedule]]
plan = "p"
"""


def _write(tmp_path: Path, body: str, head: str = HEAD) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(head) + textwrap.dedent(body), encoding="utf-8")
    return path


def test_triggers_and_typed_parameters_load(tmp_path) -> None:
    path = _write(
        tmp_path,
        """
        [[faults]]
        type = "interlock"
        code = "X1"
        latching = true
        at = { beam = 1, meterset_fraction = [0.2, 0.4] }
        [[faults]]
        type = "door_open"
        close_after_s = 5
        at = { time_s = 12.5 }
        [[faults]]
        type = "operator_terminate"
        at = { channel = 2, dwell = 3 }
        [[faults]]
        type = "store_refused"
        status = 0xA700
        count = 2
        at = { operation = "C-STORE", nth = 2, match = "RO-63" }
        [[expect]]
        type = "event"
        event = "InterlockRaised"
        where = { code = "X1" }
        within_s = [0, 100]
        """,
    )
    scenario = load_scenario(path)
    triggers = [f.trigger for f in scenario.faults]
    assert triggers == [
        MetersetTrigger(1, fraction=(0.2, 0.4)),
        TimeTrigger(12.5),
        ControlPointTrigger(2, 3),
        OperationTrigger("C-STORE", 2, "RO-63"),
    ]
    assert scenario.faults[0].fault.latching is True
    assert scenario.faults[1].fault.close_after_s == 5.0  # an integer is a valid float
    assert scenario.faults[3].fault.count == 2
    assert scenario.expectations[0].within_s == (0.0, 100.0)
    assert scenario.schedule[0].labels() == ["p Fx 1"]


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ('[[faults]]\ntype = "interlok"\n', "faults[0].type", "unknown fault 'interlok'"),
        ('[[faults]]\ntype = "interlock"\ncode = 3\n', "faults[0].code", "expected str, got 3"),
        ('[[faults]]\ntype = "interlock"\ncolour = "red"\n', "faults[0].colour", "unknown parameter"),
        (
            '[[faults]]\ntype = "interlock"\nat = { beam = 1, meterset_fraction = 1.5 }\n',
            "faults[0].at.meterset_fraction",
            "within (0, 1]",
        ),
        (
            '[[faults]]\ntype = "interlock"\nat = { operation = "C-STORE" }\n',
            "faults[0].at",
            "only for network faults",
        ),
        ('[[faults]]\ntype = "store_refused"\nat = { time_s = 3 }\n', "faults[0].at", "trigger on a DICOM"),
        (
            '[[faults]]\ntype = "device_crash"\nat = { checkpoint = "lunch" }\n',
            "faults[0].at.checkpoint",
            "one of",
        ),
        (
            '[[faults]]\ntype = "interlock"\nmachine = "LINAC9"\n',
            "faults[0].machine",
            "not one of the machines",
        ),
        ('[[expect]]\ntype = "ups_state"\nstate = 1\n', "expect[0].state", "expected str"),
        ('[[expect]]\ntype = "teapot"\n', "expect[0].type", "unknown expectation"),
        ("[[schedule]]\nplan = 'nope'\n", "schedule[1].plan", "not one of the [[plans]]"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, body, key, problem) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_schema_version_and_plan_sources_are_checked(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="schema_version: 2 is not supported"):
        load_scenario(_write(tmp_path, "", HEAD.replace("schema_version = 1", "schema_version = 2")))
    with pytest.raises(ScenarioError, match=r"plans\[0\]\.sample: 'linac:cobalt' is not a bundled sample"):
        load_scenario(_write(tmp_path, "", HEAD.replace("linac:static-mlc", "linac:cobalt")))
    with pytest.raises(ScenarioError, match=r"plans\[0\]\.file: .*missing\.dcm does not exist"):
        load_scenario(
            _write(tmp_path, "", HEAD.replace('sample = "linac:static-mlc"', 'file = "missing.dcm"'))
        )
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(_write(tmp_path, "[[faults]\n"))


def test_every_fault_registers_a_kind_and_a_summary() -> None:
    assert {
        "interlock",
        "beam_hold",
        "mlc_leaf_stuck",
        "mlc_leaf_lag",
        "gantry_stall",
        "gantry_overspeed",
    } <= set(FAULTS)
    assert {"dose_rate_drop", "door_open", "power_loss", "operator_interrupt", "operator_terminate"} <= set(
        FAULTS
    )
    assert {"tms_unreachable", "association_abort", "store_refused", "store_timeout", "slow_response"} <= set(
        FAULTS
    )
    assert "ups_cancel_request" in FAULTS
    for name, cls in FAULTS.items():
        assert cls.name == name
        assert cls.kind in ("engine", "network", "tms", "device")
        assert cls.summary


def test_a_fault_of_another_device_kind_and_an_unknown_model_are_refused(tmp_path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(_write(tmp_path, '[[faults]]\ntype = "afterloader_obstruction"\nchannel = 1\n'))
    assert caught.value.key == "faults[0].type"
    assert "afterloader devices; LINAC1 is linac" in caught.value.problem
    with pytest.raises(ScenarioError) as caught:
        load_scenario(_write(tmp_path, "", HEAD.replace("truebeam-millennium120", "cobalt-60")))
    assert caught.value.key == "machines[0].model"
