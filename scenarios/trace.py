"""The scenario trace: what happened, per machine, as JSON-able dicts free of UIDs, ports and wall time.

Entry keys: ``t`` (the machine's simulated clock in seconds: sessions follow each other, DICOM steps
between them take no simulated time), ``machine``, ``session`` (the machine's delivery count so far),
``event`` (an engine event type such as ``InterlockRaised``, or ``dicom``, ``fault``, ``retry_wait``,
``crash``, ``session``, ``outcome``, ``worklist``) and the event's own fields. Entries are kept per
machine in the order that machine's thread produced them, machines in scenario order, the TMS's final
worklist last, so a run is byte-for-byte repeatable for a seed.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from simulators.core import events as ev

TRACE_EXCLUDED = (ev.MetersetProgress, ev.AxisSample, ev.SegmentStarted)
_UID = re.compile(r"\b\d+(?:\.\d+){4,}\b")
_ADDRESS = re.compile(r"@(?:\d{1,3}\.){3}\d{1,3}:\d+")
_DECIMALS = 3


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, _DECIMALS) + 0.0
    if isinstance(value, Mapping):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


class Trace:
    """Collects entries from device threads (thread-safe), then finalizes them for output."""

    def __init__(self, machines: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, list[dict[str, Any]]] = {m: [] for m in machines}
        self._tail: list[dict[str, Any]] = []
        self._masks: list[tuple[str, str]] = []

    def add(self, machine: str, t: float, session: int, event: str, **fields: Any) -> dict[str, Any]:
        entry = {"t": _round(float(t)), "machine": machine, "session": session, "event": event}
        entry.update(_round(fields))
        with self._lock:
            self._streams.setdefault(machine, []).append(entry)
        return entry

    def add_tail(self, event: str, **fields: Any) -> None:
        """An entry after every machine's (the TMS's final state)."""
        with self._lock:
            self._tail.append({"t": 0.0, "machine": "TMS", "session": 0, "event": event, **_round(fields)})

    def mask(self, text: str, replacement: str) -> None:
        """Replace ``text`` (a run folder, a known UID) wherever it appears in the final trace."""
        if text:
            self._masks.append((text, replacement))

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, machines in order, with UIDs and addresses replaced by stable names."""
        with self._lock:
            raw = [e for stream in self._streams.values() for e in stream] + list(self._tail)
        names: dict[str, str] = {}

        def clean(value: Any) -> Any:
            if isinstance(value, str):
                for text, replacement in self._masks:
                    value = value.replace(text, replacement)
                value = _ADDRESS.sub("", value)
                return _UID.sub(lambda m: names.setdefault(m.group(0), f"<uid{len(names) + 1}>"), value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return [clean(e) for e in raw]


def event_entry(event: ev.Event) -> tuple[str, dict[str, Any]] | None:
    """(event type, fields) of an engine event for the trace; None for the high-rate ones."""
    if isinstance(event, TRACE_EXCLUDED):
        return None
    data = event.to_dict()
    kind = data.pop("type")
    data.pop("machine_id", None)
    data.pop("time_s", None)
    return kind, data


def to_jsonl(entries: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)


def _describe(e: Mapping[str, Any]) -> str:
    kind = e["event"]
    rest = {k: v for k, v in e.items() if k not in ("t", "machine", "session", "event")}
    if kind == "StateChanged":
        return f"state {rest['old']} -> {rest['new']} ({rest['reason']})"
    if kind in ("BeamOn", "BeamOff"):
        return f"beam {'on' if kind == 'BeamOn' else 'off'} (unit {rest['unit_number']})"
    if kind == "UnitStarted":
        return f"unit {rest['unit_number']} {rest['unit_name']!r} started"
    if kind == "UnitFinished":
        status = f"{rest['termination_status']} {rest['termination_code']}".rstrip()
        return f"unit {rest['unit_number']} finished {status}, delivered {rest['delivered']:g}"
    if kind == "DeliveryFinished":
        return f"delivery finished {rest['termination_status']} {rest['termination_code']}".rstrip()
    if kind == "InterlockRaised":
        return f"INTERLOCK {rest['code']}" + (" (latching)" if rest.get("latching") else "")
    if kind == "InterlockCleared":
        return f"interlock {rest['code']} cleared"
    if kind == "fault":
        return f"FAULT {rest.get('fault')}: {rest.get('what', '')}".rstrip(": ")
    if kind == "dicom":
        return f"{rest['op']:8s} -> {rest['to']}: {rest['what']}"
    if kind == "session":
        return f"session {e['session']} starts: {rest.get('what', '')}"
    if kind == "outcome":
        reason = f" ({rest['reason']})" if rest.get("reason") else ""
        return f"workitem {rest['workitem']!r}: {rest['state']}{reason}"
    if kind == "worklist":
        progress = "" if rest.get("progress") is None else f" {rest['progress']:g} %"
        return f"TMS worklist: {rest['workitem']!r} {rest['state']}{progress} {rest['delivery_type']}"
    details = ", ".join(f"{k}={v}" for k, v in rest.items())
    return f"{kind} {details}".strip()


def timeline(entries: Iterable[Mapping[str, Any]], *, include_dicom: bool = True) -> str:
    """A readable timeline: simulated time, machine, what happened."""
    lines = []
    for e in entries:
        if not include_dicom and e["event"] == "dicom":
            continue
        lines.append(f"{e['t']:10.3f} s  {e['machine']:<8s} {_describe(e)}")
    return "\n".join(lines)
