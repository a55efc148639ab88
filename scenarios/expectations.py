"""Expectations: what the TMS (read over DICOM) and the trace must show after a scenario ran.

Every check reads the TMS through :class:`simulators.dicom.observer.TmsObserver` (UPS C-FIND, OST C-FIND
and C-GET), for the embedded TMS and a user's own alike. A failed check says what the TMS did and why that
is wrong, e.g. "the TMS reports COMPLETED ... it counts a partial delivery as the whole fraction".

Add an expectation: a dataclass subclass of :class:`Expectation` with ``name``, fields as parameters and
``check(observed) -> (passed, message)``, decorated with :func:`register_expectation`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydicom import Dataset

from simulators.dicom.observer import RECORD_CLASSES, TmsObserver
from simulators.dicom.tms.client import WorklistEntry
from simulators.dicom.tms.scheduler import InputRef

METERSET_TOLERANCE_MU = 0.01


@dataclass
class WorkitemView:
    """One workitem as the TMS shows it over DICOM."""

    entry: WorklistEntry
    outputs: list[InputRef]

    @property
    def label(self) -> str:
        return self.entry.label

    @property
    def record_refs(self) -> list[InputRef]:
        return [r for r in self.outputs if r.sop_class_uid in RECORD_CLASSES or not r.sop_class_uid]


@dataclass
class Observed:
    """What the expectations look at: the TMS's workitems, its records (fetched lazily), the trace."""

    workitems: list[WorkitemView]
    trace: list[dict[str, Any]]
    plan_metersets: dict[str, dict[int, float]]  # scheduled label -> beam number -> planned meterset
    observer: TmsObserver | None = None
    units: dict[str, str] = field(default_factory=dict)  # scheduled label -> "MU" or "s" (brachy)
    _records: dict[str, Dataset | None] = field(default_factory=dict)
    _stored: dict[str, bool] = field(default_factory=dict)

    def unit(self, label: str) -> str:
        return self.units.get(label.removesuffix(" (continuation)"), "MU")

    def workitem(self, label: str) -> WorkitemView | None:
        return next((w for w in self.workitems if w.label == label), None)

    def labels(self) -> str:
        return ", ".join(repr(w.label) for w in self.workitems) or "none"

    def continuation_of(self, view: WorkitemView) -> WorkitemView | None:
        return next((w for w in self.workitems if w.entry.replaces == view.entry.uid), None)

    def record(self, ref: InputRef) -> Dataset | None:
        if ref.sop_instance_uid not in self._records:
            self._records[ref.sop_instance_uid] = self.observer.retrieve(ref) if self.observer else None
        return self._records[ref.sop_instance_uid]

    def stored(self, ref: InputRef) -> bool:
        if ref.sop_instance_uid not in self._stored:
            self._stored[ref.sop_instance_uid] = self.observer.stored(ref) if self.observer else False
        return self._stored[ref.sop_instance_uid]

    def delivered_by_beam(self, view: WorkitemView) -> dict[int, float]:
        """Beam number -> delivered MU (linac), or channel number -> delivered time in s (brachy)."""
        out: dict[int, float] = {}
        for ref in view.record_refs:
            record = self.record(ref)
            if record is None:
                continue
            for item in record.get("TreatmentSessionBeamSequence") or []:
                _add(out, int(item.get("ReferencedBeamNumber", 0) or 0), item.get("DeliveredPrimaryMeterset"))
            for setup in record.get("TreatmentSessionApplicationSetupSequence") or []:
                for channel in setup.get("RecordedChannelSequence") or []:
                    _add(
                        out,
                        int(channel.get("ChannelNumber", 0) or 0),
                        channel.get("DeliveredChannelTotalTime"),
                    )
        return out


def session_items(record: Dataset) -> list[Dataset]:
    """The record's per-beam (linac) or per-application-setup (brachy) items, with termination status."""
    return list(record.get("TreatmentSessionBeamSequence") or []) + list(
        record.get("TreatmentSessionApplicationSetupSequence") or []
    )


def _add(out: dict[int, float], key: int, value: object) -> None:
    out[key] = out.get(key, 0.0) + (float(value) if value not in (None, "") else 0.0)


@dataclass
class Expectation:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    why: str = ""  # the scenario's own words on why it matters (printed with a failure)

    def check(self, observed: Observed) -> tuple[bool, str]:
        raise NotImplementedError

    def describe(self) -> str:
        params = {k: v for k, v in dataclasses.asdict(self).items() if k != "why" and v not in ("", None, {})}
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"


EXPECTATIONS: dict[str, type[Expectation]] = {}


def register_expectation(cls: type[Expectation]) -> type[Expectation]:
    if not cls.name or cls.name in EXPECTATIONS:
        raise ValueError(f"expectation class {cls.__name__}: name {cls.name!r} is empty or taken")
    EXPECTATIONS[cls.name] = cls
    return cls


def _missing(observed: Observed, label: str) -> tuple[bool, str]:
    return False, f"the TMS has no workitem labelled {label!r} (it has {observed.labels()})"


def _mu(value: float) -> str:
    return f"{value:.2f}"


@register_expectation
@dataclass
class UpsState(Expectation):
    name: ClassVar[str] = "ups_state"
    summary: ClassVar[str] = "the workitem's final UPS state on the TMS"
    workitem: str = ""
    state: str = "COMPLETED"

    def check(self, observed: Observed) -> tuple[bool, str]:
        view = observed.workitem(self.workitem)
        if view is None:
            return _missing(observed, self.workitem)
        actual = view.entry.state
        if actual == self.state:
            return True, f"{self.workitem!r} is {actual}"
        message = f"{self.workitem!r}: the TMS reports {actual}, expected {self.state}"
        if self.state == "CANCELED" and actual == "COMPLETED":
            delivered = sum(observed.delivered_by_beam(view).values())
            planned = sum(observed.plan_metersets.get(self.workitem, {}).values())
            unit = observed.unit(self.workitem)
            amount = f" ({_mu(delivered)} of {_mu(planned)} {unit} delivered)" if planned else ""
            message += (
                f": the TMS marked an interrupted fraction as complete{amount}; it would count a partial "
                "delivery as the whole fraction and never deliver the rest"
            )
        elif self.state == "COMPLETED" and actual == "IN PROGRESS":
            message += ": the workitem was never finished (a record not stored, or a final N-ACTION lost)"
        return False, message


@register_expectation
@dataclass
class RecordTermination(Expectation):
    name: ClassVar[str] = "record"
    summary: ClassVar[str] = "the treatment record on the OST: termination status (and code) of its beams"
    workitem: str = ""
    termination_status: str = "NORMAL"
    termination_code: str = ""
    beam: int | None = None

    def check(self, observed: Observed) -> tuple[bool, str]:
        view = observed.workitem(self.workitem)
        if view is None:
            return _missing(observed, self.workitem)
        if not view.record_refs:
            return False, f"{self.workitem!r}: the UPS lists no treatment record in its Output Information"
        items = []
        for ref in view.record_refs:
            record = observed.record(ref)
            if record is None:
                return (
                    False,
                    f"{self.workitem!r}: record {ref.sop_instance_uid} is listed but the OST has none",
                )
            items += session_items(record)
        if self.beam is not None:
            items = [i for i in items if int(i.get("ReferencedBeamNumber", -1)) == self.beam]
            if not items:
                return False, f"{self.workitem!r}: the record has no item for beam {self.beam}"
        found = [
            (str(i.get("TreatmentTerminationStatus", "")), str(i.get("TreatmentTerminationCode", "") or ""))
            for i in items
        ]
        wanted_code = self.termination_code
        if any(
            status == self.termination_status and (not wanted_code or code == wanted_code)
            for status, code in found
        ):
            return (
                True,
                f"{self.workitem!r}: record terminated {self.termination_status} {wanted_code}".rstrip(),
            )
        shown = ", ".join(f"{s} {c}".strip() for s, c in found)
        return False, (
            f"{self.workitem!r}: record termination {shown}, "
            f"expected {self.termination_status} {wanted_code}".rstrip()
        )


@register_expectation
@dataclass
class DeliveredMeterset(Expectation):
    name: ClassVar[str] = "delivered_meterset"
    summary: ClassVar[str] = "meterset delivered in the workitem's record(s): mu, or fraction of planned"
    workitem: str = ""
    beam: int | None = None
    mu: float | None = None
    fraction: float | None = None
    tolerance_mu: float = 0.5

    def check(self, observed: Observed) -> tuple[bool, str]:
        view = observed.workitem(self.workitem)
        if view is None:
            return _missing(observed, self.workitem)
        by_beam = observed.delivered_by_beam(view)
        delivered = by_beam.get(self.beam, 0.0) if self.beam is not None else sum(by_beam.values())
        planned_by_beam = observed.plan_metersets.get(self.workitem.removesuffix(" (continuation)"), {})
        planned = (
            planned_by_beam.get(self.beam, 0.0) if self.beam is not None else sum(planned_by_beam.values())
        )
        if self.mu is not None:
            wanted = self.mu
        elif self.fraction is not None:
            wanted = self.fraction * planned
        else:
            wanted = planned
        what = f"beam/channel {self.beam}" if self.beam is not None else "all beams/channels"
        text = (
            f"{self.workitem!r} {what}: {_mu(delivered)} {observed.unit(self.workitem)} delivered, "
            f"expected {_mu(wanted)} ± {self.tolerance_mu:g}"
        )
        return abs(delivered - wanted) <= self.tolerance_mu, text


@register_expectation
@dataclass
class RecordStored(Expectation):
    name: ClassVar[str] = "record_stored"
    summary: ClassVar[str] = "the workitem's record is (or, stored = false, is not) on the OST (C-FIND)"
    workitem: str = ""
    stored: bool = True

    def check(self, observed: Observed) -> tuple[bool, str]:
        view = observed.workitem(self.workitem)
        if view is None:
            return _missing(observed, self.workitem)
        refs = view.record_refs
        if not self.stored:
            if refs:
                return False, f"{self.workitem!r}: lists {len(refs)} record(s), expected none"
            return True, f"{self.workitem!r}: no record, as expected"
        if not refs:
            return False, f"{self.workitem!r}: the UPS lists no treatment record in its Output Information"
        missing = [r.sop_instance_uid for r in refs if not observed.stored(r)]
        if missing:
            return False, (
                f"{self.workitem!r}: the UPS names record(s) {', '.join(missing)} that the OST does not "
                "have: the TMS accepted a final state whose output it cannot produce"
            )
        return True, f"{self.workitem!r}: {len(refs)} record(s) on the OST"


@register_expectation
@dataclass
class ContinuationCompleted(Expectation):
    name: ClassVar[str] = "continuation"
    summary: ClassVar[str] = "the TMS scheduled a CONTINUATION, it completed, and the total equals the plan"
    workitem: str = ""
    completed: bool = True
    total_equals_plan: bool = True
    tolerance_mu: float = METERSET_TOLERANCE_MU

    def check(self, observed: Observed) -> tuple[bool, str]:
        view = observed.workitem(self.workitem)
        if view is None:
            return _missing(observed, self.workitem)
        chain = [view]
        while (nxt := observed.continuation_of(chain[-1])) is not None and len(chain) < 20:
            chain.append(nxt)
        first_mu = sum(observed.delivered_by_beam(view).values())
        planned_by_beam = observed.plan_metersets.get(self.workitem, {})
        planned = sum(planned_by_beam.values())
        unit = observed.unit(self.workitem)
        if len(chain) == 1:
            return False, (
                f"the TMS scheduled no CONTINUATION for {self.workitem!r} (ended {view.entry.state} with "
                f"{_mu(first_mu)} of {_mu(planned)} {unit} delivered): the remaining "
                f"{_mu(max(planned - first_mu, 0.0))} {unit} of this fraction would never be delivered"
            )
        for link in chain[1:]:
            if link.entry.delivery_type != "CONTINUATION":
                return False, (
                    f"{link.label!r} replaces {self.workitem!r} but its Treatment Delivery Type is "
                    f"{link.entry.delivery_type or 'missing'}, not CONTINUATION: the device would deliver "
                    "the whole fraction again"
                )
        last = chain[-1]
        if self.completed and last.entry.state != "COMPLETED":
            return False, f"continuation {last.label!r} ended {last.entry.state}, expected COMPLETED"
        if self.total_equals_plan:
            totals: dict[int, float] = {}
            for link in chain:
                for beam, mu in observed.delivered_by_beam(link).items():
                    totals[beam] = totals.get(beam, 0.0) + mu
            wrong = [
                f"beam/channel {beam}: {_mu(totals.get(beam, 0.0))} of {_mu(mu)} {unit}"
                for beam, mu in sorted(planned_by_beam.items())
                if abs(totals.get(beam, 0.0) - mu) > self.tolerance_mu
            ]
            if wrong:
                return False, (
                    f"{self.workitem!r} and its continuation(s) together delivered {'; '.join(wrong)}: "
                    "the continuation's start meterset does not match what the records say was delivered"
                )
        return True, f"{self.workitem!r} continued in {len(chain) - 1} session(s); total equals the plan"


@register_expectation
@dataclass
class NoContinuation(Expectation):
    name: ClassVar[str] = "no_continuation"
    summary: ClassVar[str] = "the TMS did not schedule a continuation of the workitem"
    workitem: str = ""

    def check(self, observed: Observed) -> tuple[bool, str]:
        view = observed.workitem(self.workitem)
        if view is None:
            return _missing(observed, self.workitem)
        nxt = observed.continuation_of(view)
        if nxt is None:
            return True, f"no continuation of {self.workitem!r}"
        return False, f"the TMS scheduled {nxt.label!r} to continue {self.workitem!r}, expected none"


def _where(where: Mapping[str, Any]) -> str:
    return f" {dict(where)}" if where else ""


def _matches(entry: Mapping[str, Any], event: str, machine: str, where: Mapping[str, Any]) -> bool:
    if entry.get("event") != event or (machine and entry.get("machine") != machine):
        return False
    return all(str(entry.get(k)) == str(v) for k, v in where.items())


@register_expectation
@dataclass
class EventWithin(Expectation):
    name: ClassVar[str] = "event"
    summary: ClassVar[str] = "a trace event (with these fields) happened, optionally within [t0, t1] s"
    event: str = ""
    machine: str = ""
    where: dict = field(default_factory=dict)
    within_s: tuple[float, float] | None = None
    min_count: int = 1

    def check(self, observed: Observed) -> tuple[bool, str]:
        hits = [e for e in observed.trace if _matches(e, self.event, self.machine, self.where)]
        times = ", ".join(f"{e['t']:g}" for e in hits[:5]) or "never"
        if self.within_s is not None:
            inside = [e for e in hits if self.within_s[0] <= e["t"] <= self.within_s[1]]
            window = f" within {self.within_s[0]:g}..{self.within_s[1]:g} s"
        else:
            inside, window = hits, ""
        ok = len(inside) >= self.min_count
        return ok, f"{self.event}{_where(self.where)}{window}: {len(inside)} time(s) (at {times} s)"


@register_expectation
@dataclass
class EventNever(Expectation):
    name: ClassVar[str] = "never"
    summary: ClassVar[str] = "a trace event (with these fields) never happened"
    event: str = ""
    machine: str = ""
    where: dict = field(default_factory=dict)

    def check(self, observed: Observed) -> tuple[bool, str]:
        hits = [e for e in observed.trace if _matches(e, self.event, self.machine, self.where)]
        if not hits:
            return True, f"{self.event}{_where(self.where)}: never happened"
        return (
            False,
            f"{self.event}{_where(self.where)} happened {len(hits)} time(s), first at {hits[0]['t']:g} s",
        )
