"""summary.json: what one delivery did, for people and scripts (design.md §5), and its short text form.

``build_summary`` turns a :class:`DeliveryResult` into a JSON-ready dict; ``write_summary`` writes it;
``format_human_summary`` renders the few lines the CLI prints. Keys (schema version 1):

* ``schema_version``, ``plan_uid``, ``plan_label``, ``plan_name``, ``plan_source``
* ``machine_id``, ``machine`` (``model_id``, ``manufacturer``, ``model_name``), ``device_kind``
* ``session_start`` (ISO 8601), ``seed``, ``termination_status``, ``termination_code``
* ``total_time_s`` (session, including setup motion), ``beam_on_time_s`` (sum over units)
* ``record_file`` (the treatment record written, or null)
* ``unit_kind`` (``"beam"`` for a linac) and ``units``: per unit ``number``, ``name``, ``delivered``,
  ``meterset_unit``, ``specified_meterset`` (this session's target: end - start for a continuation),
  ``plan_meterset`` (the plan's full Beam Meterset, or null), ``delivered_meterset``, ``beam_on_time_s``,
  ``total_time_s`` (including motion and holds), ``termination_status``, ``termination_code``,
  ``limiting_axis`` (the axis that limited the speed longest) and ``limiting_axis_share`` (axis -> fraction
  of the unit's time it limited).
* ``afterloader`` (afterloaders only): the decay correction factor, the installed source's strength at
  treatment time, pulses, and per channel the dwell, transit and check-cable times
  (:func:`simulators.records.brachy_record.brachy_summary_fields`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from machine_models.schema import MachineModel
from simulators.core.results import DeliveryResult, TerminationStatus, UnitResult

SUMMARY_SCHEMA_VERSION = 1
UNIT_KINDS = {"linac": "beam", "tomotherapy": "beam", "gamma_knife": "shot", "afterloader": "channel"}


def build_summary(
    plan: Any,
    result: DeliveryResult,
    record_path: str | os.PathLike[str] | None,
    machine: MachineModel,
) -> dict[str, Any]:
    """The summary of one delivery as a JSON-ready dict (see the module docstring for the keys).

    ``plan`` is the typed plan that was delivered (its ``identity``; a linac plan also gives each beam's
    full meterset).
    """
    identity = plan.identity
    units = [_unit_summary(unit, _plan_meterset(plan, unit.number)) for unit in result.units]
    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "plan_uid": identity.sop_instance_uid,
        "plan_label": identity.label,
        "plan_name": identity.name,
        "plan_source": identity.source,
        "machine_id": result.machine_id,
        "machine": {
            "model_id": machine.model_id,
            "manufacturer": machine.manufacturer,
            "model_name": machine.model_name,
        },
        "device_kind": result.device_kind,
        "session_start": result.session_start.isoformat(),
        "seed": int(result.seed),
        "termination_status": str(result.termination_status),
        "termination_code": result.termination_code,
        "total_time_s": _round(result.end_time_s, 3),
        "beam_on_time_s": _round(sum(u.beam_on_time_s for u in result.units), 3),
        "record_file": str(record_path) if record_path is not None else None,
        "unit_kind": UNIT_KINDS.get(result.device_kind, "unit"),
        "units": units,
    }
    if result.device_kind == "afterloader" and machine.afterloader is not None:
        from simulators.records.brachy_record import brachy_summary_fields  # the afterloader's own block

        summary["afterloader"] = brachy_summary_fields(plan, result, machine)
    return summary


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Write ``summary`` as indented JSON (atomically); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, target)
    return target


def format_human_summary(summary: dict[str, Any]) -> str:
    """The short text the CLI prints: per unit meterset, beam-on time, total time, what limited the speed."""
    kind = summary.get("unit_kind", "unit")
    status = _status_text(summary["termination_status"], summary.get("termination_code", ""))
    label = summary.get("plan_label") or summary.get("plan_uid", "")
    lines = [f"Plan {label} on {summary['machine_id']}: {status}"]
    for unit in summary["units"]:
        head = f"  {kind.capitalize()} {unit['number']} {unit['name']!r}:"
        if not unit["delivered"]:
            lines.append(f"{head} not delivered")
            continue
        meterset_unit = unit["meterset_unit"]
        text = (
            f"{head} {unit['delivered_meterset']:.2f} of {unit['specified_meterset']:.2f} {meterset_unit}, "
            f"beam on {_duration(unit['beam_on_time_s'])}, total {_duration(unit['total_time_s'])}"
        )
        limits = _limits_text(unit["limiting_axis_share"])
        if limits:
            text += f", limited by {limits}"
        if unit["termination_status"] != TerminationStatus.NORMAL:
            text += f" [{_status_text(unit['termination_status'], unit['termination_code'])}]"
        lines.append(text)
    done = sum(1 for u in summary["units"] if u["delivered"] and u["termination_status"] == "NORMAL")
    record = summary.get("record_file") or "none written"
    beam_on, total = _duration(summary["beam_on_time_s"]), _duration(summary["total_time_s"])
    lines.append(
        f"Session: {done} of {len(summary['units'])} {kind}s complete, beam on {beam_on}, total {total}; "
        f"record: {record}"
    )
    return "\n".join(lines)


# --- helpers ------------------------------------------------------------------------------------------


def _unit_summary(unit: UnitResult, plan_meterset: float | None) -> dict[str, Any]:
    share = {str(axis): _round(value, 4) for axis, value in unit.limiting_axis_share.items()}
    share = dict(sorted(share.items(), key=lambda item: (-item[1], item[0])))
    return {
        "number": int(unit.number),
        "name": unit.name,
        "delivered": bool(unit.delivered),
        "meterset_unit": unit.meterset_unit,
        "specified_meterset": _round(unit.specified_meterset, 5),
        "plan_meterset": _round(plan_meterset, 5) if plan_meterset is not None else None,
        "delivered_meterset": _round(unit.delivered_meterset, 5),
        "beam_on_time_s": _round(unit.beam_on_time_s, 3),
        "total_time_s": _round(unit.total_time_s, 3),
        "termination_status": str(unit.termination_status),
        "termination_code": unit.termination_code,
        "limiting_axis": next(iter(share), None),
        "limiting_axis_share": share,
    }


def _plan_meterset(plan: Any, number: int) -> float | None:
    """The plan's full meterset for unit ``number`` (first fraction group that lists it), if known."""
    for group in getattr(plan, "fraction_groups", ()):
        metersets = getattr(group, "beam_metersets_mu", {})  # brachy fraction groups have none
        if number in metersets:
            return float(metersets[number])
    return None


def _round(value: float, decimals: int) -> float:
    rounded = round(float(value), decimals)
    return 0.0 if rounded == 0 else rounded


def _status_text(status: str, code: str) -> str:
    return f"{status} ({code})" if code else str(status)


def _limits_text(share: dict[str, float], top: int = 2) -> str:
    """The ``top`` axes that limited the speed longest, leaving out shares under 0.5 %."""
    parts = [f"{axis} {value:.0%}" for axis, value in share.items() if value >= 0.005][:top]
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)} min {rest:04.1f} s"
