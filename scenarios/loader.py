"""Scenario files (TOML, ``schema_version = 1``) -> :class:`~scenarios.model.Scenario`.

The format is documented in ``docs/scenarios.md``. Every error is a :class:`ScenarioError` naming the file
and the key (``faults[2].at.meterset_fraction``), like the machine-model loader.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from machine_models import ModelError, load_model
from scenarios import expectations as ex
from scenarios import faults as fl
from scenarios.errors import ScenarioError
from scenarios.model import (
    SCHEMA_VERSION,
    FaultSpec,
    MachineSpec,
    PlanSpec,
    Scenario,
    ScheduleSpec,
    ScriptSpec,
)
from scenarios.params import build
from scenarios.triggers import (
    CHECKPOINTS,
    CheckpointTrigger,
    ControlPointTrigger,
    MetersetTrigger,
    OperationTrigger,
    TimeTrigger,
    Trigger,
)
from simulators.errors import RtsimError

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
UNIT_KEYS = ("unit", "beam", "channel", "shot")
CP_KEYS = ("control_point", "dwell", "projection")
OPERATIONS = ("C-ECHO", "C-FIND", "C-MOVE", "N-ACTION", "N-SET", "C-STORE")
_TOP = {
    "schema_version",
    "name",
    "title",
    "tests",
    "why",
    "seed",
    "tags",
    "machines",
    "plans",
    "schedule",
    "faults",
    "scripts",
    "expect",
}


def library_paths() -> list[Path]:
    """The bundled scenarios, by file name."""
    return sorted(LIBRARY_DIR.glob("*.toml"))


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file (a path, or the name of a bundled one)."""
    p = Path(path)
    if not p.exists() and (LIBRARY_DIR / f"{p.name}.toml").exists():
        p = LIBRARY_DIR / f"{p.name}.toml"
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(source, "", f"cannot read: {error.strerror or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(source, "", f"not valid TOML: {error}") from None
    return loads_scenario(data, source=source, base_dir=p.resolve().parent)


def _get(
    table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str, where: str, default=...
):
    if key not in table:
        if default is ...:
            raise ScenarioError(source, f"{where}{key}", "missing")
        return default
    value = table[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ScenarioError(source, f"{where}{key}", f"expected a number, got {value!r}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ScenarioError(source, f"{where}{key}", f"expected {name}, got {value!r}")
    return value


def _tables(data: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ScenarioError(source, key, f"expected an array of tables ([[{key}]])")
    return value


def _unknown(table: Mapping[str, Any], allowed: set[str], source: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ScenarioError(source, f"{where}{key}", f"unknown key (known: {', '.join(sorted(allowed))})")


def loads_scenario(
    data: Mapping[str, Any], *, source: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Check a parsed TOML document and build the :class:`Scenario`."""
    base = base_dir or Path.cwd()
    _unknown(data, _TOP, source, "")
    version = _get(data, "schema_version", int, source, "")
    if version != SCHEMA_VERSION:
        raise ScenarioError(
            source, "schema_version", f"{version} is not supported (this rtsim reads {SCHEMA_VERSION})"
        )
    name = _get(data, "name", str, source, "", Path(source).stem)
    machines = _machines(data, source, base)
    names = [m.name for m in machines]
    kinds = _kinds(machines, source)
    plans = _plans(data, source, base)
    plan_names = {p.name for p in plans}
    schedule = _schedule(data, source, names, plan_names)
    faults = tuple(
        _fault(t, f"faults[{i}]", source, names) for i, t in enumerate(_tables(data, "faults", source))
    )
    for spec in faults:
        allowed_kinds = type(spec.fault).device_kinds
        if allowed_kinds and kinds[spec.machine] not in allowed_kinds:
            raise ScenarioError(
                source,
                f"{spec.key}.type",
                f"{spec.fault.name} is a fault of {', '.join(allowed_kinds)} devices; "
                f"{spec.machine} is {kinds[spec.machine]}",
            )
    scripts = tuple(
        _script(t, f"scripts[{i}]", source, base, names)
        for i, t in enumerate(_tables(data, "scripts", source))
    )
    expectations = tuple(
        _expectation(t, f"expect[{i}]", source) for i, t in enumerate(_tables(data, "expect", source))
    )
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ScenarioError(source, "tags", "expected a list of strings")
    return Scenario(
        source=source,
        name=name,
        title=_get(data, "title", str, source, "", name),
        tests=_get(data, "tests", str, source, "", ""),
        why=_get(data, "why", str, source, "", ""),
        seed=_get(data, "seed", int, source, "", 0),
        machines=machines,
        plans=plans,
        schedule=schedule,
        faults=faults,
        scripts=scripts,
        expectations=expectations,
        tags=tuple(tags),
    )


def _machines(data: Mapping[str, Any], source: str, base: Path) -> tuple[MachineSpec, ...]:
    tables = _tables(data, "machines", source)
    if not tables:
        raise ScenarioError(source, "machines", "at least one [[machines]] table is needed")
    out = []
    allowed = {
        "name",
        "model",
        "station",
        "answers_to",
        "require_approved",
        "interrupt_timeout_s",
        "fresh_source",
    }
    for i, t in enumerate(tables):
        where = f"machines[{i}]."
        _unknown(t, allowed, source, where)
        name = _get(t, "name", str, source, where)
        if not 0 < len(name) <= 16 or " " in name:
            raise ScenarioError(
                source, f"{where}name", f"{name!r}: an AE title of 1..16 characters, no spaces"
            )
        model = _get(t, "model", str, source, where)
        if model.endswith(".toml"):
            model = str((base / model).resolve())
        timeout = float(_get(t, "interrupt_timeout_s", (int, float), source, where, 600.0))
        if timeout < 0:
            raise ScenarioError(source, f"{where}interrupt_timeout_s", "must be >= 0")
        out.append(
            MachineSpec(
                name=name,
                model=model,
                station=_get(t, "station", str, source, where, name),
                answers_to=_get(t, "answers_to", str, source, where, None),
                require_approved=_get(t, "require_approved", bool, source, where, True),
                interrupt_timeout_s=timeout,
                fresh_source=_get(t, "fresh_source", bool, source, where, False),
            )
        )
    if len({m.name for m in out}) != len(out):
        raise ScenarioError(source, "machines", "machine names must be unique")
    return tuple(out)


def _kinds(machines: tuple[MachineSpec, ...], source: str) -> dict[str, str]:
    """Machine name -> device kind (the model is loaded: a wrong id or file is reported here)."""
    out = {}
    for i, machine in enumerate(machines):
        try:
            out[machine.name] = str(load_model(machine.model).kind)
        except (ModelError, RtsimError) as error:
            raise ScenarioError(source, f"machines[{i}].model", str(error)) from None
    return out


def _plans(data: Mapping[str, Any], source: str, base: Path) -> tuple[PlanSpec, ...]:
    out = []
    for i, t in enumerate(_tables(data, "plans", source)):
        where = f"plans[{i}]."
        _unknown(t, {"name", "file", "sample", "params"}, source, where)
        name = _get(t, "name", str, source, where)
        file = _get(t, "file", str, source, where, None)
        sample = _get(t, "sample", str, source, where, None)
        if (file is None) == (sample is None):
            raise ScenarioError(source, f"plans[{i}]", "give exactly one of file or sample")
        params = _get(t, "params", dict, source, where, {})
        path = None
        if file is not None:
            path = (base / file).resolve()
            if not path.is_file():
                raise ScenarioError(source, f"{where}file", f"{path} does not exist")
        else:
            from scenarios.plans import check_sample

            problem = check_sample(sample, params)
            if problem:
                raise ScenarioError(source, f"{where}sample", problem)
        out.append(PlanSpec(name=name, file=path, sample=sample, params=dict(params)))
    if len({p.name for p in out}) != len(out):
        raise ScenarioError(source, "plans", "plan names must be unique")
    return tuple(out)


def _schedule(data, source: str, machines: list[str], plans: set[str]) -> tuple[ScheduleSpec, ...]:
    out = []
    for i, t in enumerate(_tables(data, "schedule", source)):
        where = f"schedule[{i}]."
        _unknown(t, {"plan", "machine", "fractions", "first_fraction", "label", "priority"}, source, where)
        plan = _get(t, "plan", str, source, where)
        if plan not in plans:
            raise ScenarioError(
                source, f"{where}plan", f"{plan!r} is not one of the [[plans]] ({', '.join(sorted(plans))})"
            )
        machine = _get(t, "machine", str, source, where, machines[0])
        if machine not in machines:
            raise ScenarioError(
                source, f"{where}machine", f"{machine!r} is not one of the machines ({', '.join(machines)})"
            )
        fractions = _get(t, "fractions", int, source, where, 1)
        first = _get(t, "first_fraction", int, source, where, 1)
        if fractions < 1 or first < 1:
            raise ScenarioError(source, f"schedule[{i}]", "fractions and first_fraction must be >= 1")
        priority = _get(t, "priority", str, source, where, "MEDIUM")
        if priority not in ("HIGH", "MEDIUM", "LOW"):
            raise ScenarioError(source, f"{where}priority", f"{priority!r}: expected HIGH, MEDIUM or LOW")
        out.append(
            ScheduleSpec(
                key=f"schedule[{i}]",
                plan=plan,
                machine=machine,
                fractions=fractions,
                first_fraction=first,
                label=_get(t, "label", str, source, where, ""),
                priority=priority,
            )
        )
    labels = [label for s in out for label in s.labels()]
    if len(set(labels)) != len(labels):
        raise ScenarioError(source, "schedule", f"workitem labels must be unique: {labels}")
    return tuple(out)


def _range(value: Any, source: str, key: str) -> float | tuple[float, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    ):
        return (float(value[0]), float(value[1]))
    raise ScenarioError(source, key, f"expected a number or [low, high], got {value!r}")


def _trigger(table: Mapping[str, Any] | None, kind: str, source: str, key: str) -> Trigger:
    if table is None:
        return OperationTrigger() if kind == "network" else TimeTrigger(0.0)
    if not isinstance(table, dict):
        raise ScenarioError(source, key, "expected a table, e.g. at = { time_s = 12.5 }")
    units = [k for k in UNIT_KEYS if k in table]
    cps = [k for k in CP_KEYS if k in table]
    allowed = {
        "time_s",
        "meterset_fraction",
        "meterset_mu",
        "operation",
        "nth",
        "match",
        "checkpoint",
        *UNIT_KEYS,
        *CP_KEYS,
    }
    _unknown(table, allowed, source, f"{key}.")
    if len(units) > 1 or len(cps) > 1:
        raise ScenarioError(
            source, key, "give one unit key (unit/beam/channel/shot) and at most one control point key"
        )
    if "operation" in table or "nth" in table or "match" in table:
        if kind != "network":
            raise ScenarioError(source, key, "a DICOM operation trigger is only for network faults")
        operation = _get(table, "operation", str, source, f"{key}.", "")
        if operation and operation not in OPERATIONS:
            raise ScenarioError(source, f"{key}.operation", f"{operation!r}: one of {', '.join(OPERATIONS)}")
        nth = _get(table, "nth", int, source, f"{key}.", 1)
        if nth < 1:
            raise ScenarioError(source, f"{key}.nth", "must be >= 1")
        return OperationTrigger(operation, nth, _get(table, "match", str, source, f"{key}.", ""))
    if kind == "network":
        raise ScenarioError(
            source, key, "network faults trigger on a DICOM operation: at = { operation = ..., nth = ... }"
        )
    if "checkpoint" in table:
        if kind != "device":
            raise ScenarioError(source, f"{key}.checkpoint", "a checkpoint trigger is only for device faults")
        name = _get(table, "checkpoint", str, source, f"{key}.")
        if name not in CHECKPOINTS:
            raise ScenarioError(source, f"{key}.checkpoint", f"{name!r}: one of {', '.join(CHECKPOINTS)}")
        return CheckpointTrigger(name)
    if "time_s" in table:
        if units or cps or "meterset_fraction" in table or "meterset_mu" in table:
            raise ScenarioError(source, key, "time_s cannot be combined with a unit trigger")
        return TimeTrigger(_range(table["time_s"], source, f"{key}.time_s"))
    if not units:
        raise ScenarioError(
            source,
            key,
            "give time_s, or a unit (beam/channel/shot) with meterset_fraction, meterset_mu or control_point",
        )
    unit = _get(table, units[0], int, source, f"{key}.")
    if cps:
        if "meterset_fraction" in table or "meterset_mu" in table:
            raise ScenarioError(source, key, "give a meterset or a control point, not both")
        return ControlPointTrigger(unit, _get(table, cps[0], int, source, f"{key}."))
    if "meterset_fraction" in table:
        fraction = _range(table["meterset_fraction"], source, f"{key}.meterset_fraction")
        low, high = fraction if isinstance(fraction, tuple) else (fraction, fraction)
        if not 0 < low <= high <= 1:
            raise ScenarioError(source, f"{key}.meterset_fraction", "must be within (0, 1]")
        return MetersetTrigger(unit, fraction=fraction)
    if "meterset_mu" in table:
        return MetersetTrigger(unit, mu=_range(table["meterset_mu"], source, f"{key}.meterset_mu"))
    raise ScenarioError(source, key, f"{units[0]} needs meterset_fraction, meterset_mu or control_point")


def _fault(table: Mapping[str, Any], key: str, source: str, machines: list[str]) -> FaultSpec:
    fault_type = _get(table, "type", str, source, f"{key}.")
    cls = fl.FAULTS.get(fault_type)
    if cls is None:
        raise ScenarioError(
            source, f"{key}.type", f"unknown fault {fault_type!r} (known: {', '.join(sorted(fl.FAULTS))})"
        )
    machine = _get(table, "machine", str, source, f"{key}.", machines[0])
    if machine not in machines:
        raise ScenarioError(
            source, f"{key}.machine", f"{machine!r} is not one of the machines ({', '.join(machines)})"
        )
    session = _get(table, "session", int, source, f"{key}.", 1)
    if session < 1:
        raise ScenarioError(source, f"{key}.session", "must be >= 1")
    try:
        fault = build(cls, table, source, key, reserved=("type", "machine", "session", "at"))
    except (TypeError, ValueError) as error:
        raise ScenarioError(source, key, str(error)) from None
    trigger = _trigger(table.get("at"), cls.kind, source, f"{key}.at")
    if cls.kind in ("engine", "tms") and isinstance(trigger, CheckpointTrigger | OperationTrigger):
        raise ScenarioError(
            source, f"{key}.at", f"{fault_type} needs a time, meterset or control point trigger"
        )
    return FaultSpec(key=key, fault=fault, machine=machine, session=session, trigger=trigger)


def _script(table, key: str, source: str, base: Path, machines: list[str]) -> ScriptSpec:
    _unknown(table, {"file", "function", "machine", "session"}, source, f"{key}.")
    path = (base / _get(table, "file", str, source, f"{key}.")).resolve()
    if not path.is_file():
        raise ScenarioError(source, f"{key}.file", f"{path} does not exist")
    machine = _get(table, "machine", str, source, f"{key}.", machines[0])
    if machine not in machines:
        raise ScenarioError(
            source, f"{key}.machine", f"{machine!r} is not one of the machines ({', '.join(machines)})"
        )
    return ScriptSpec(
        key=key,
        path=path,
        function=_get(table, "function", str, source, f"{key}."),
        machine=machine,
        session=_get(table, "session", int, source, f"{key}.", 1),
    )


def _expectation(table: Mapping[str, Any], key: str, source: str) -> ex.Expectation:
    kind = _get(table, "type", str, source, f"{key}.")
    cls = ex.EXPECTATIONS.get(kind)
    if cls is None:
        raise ScenarioError(
            source,
            f"{key}.type",
            f"unknown expectation {kind!r} (known: {', '.join(sorted(ex.EXPECTATIONS))})",
        )
    return build(cls, table, source, key, reserved=("type",))
