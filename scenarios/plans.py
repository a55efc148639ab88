"""The plans a scenario uses: DICOM files, or the bundled sample-plan generators with parameters.

``sample = "linac:vmat"`` calls :func:`simulators.plans.samples.linac.sample_linac_plan` with ``kind`` and
the table's ``params`` (``machine_name``, ``patient_id``, ``patient_name``, ``fractions``);
``sample = "brachy:hdr-cervix"`` calls :func:`simulators.plans.samples.brachy.sample_brachy_plan` (when the
afterloader is installed) with ``machine_name``, ``patient_id``, ``patient_name``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib import import_module
from typing import Any

from pydicom import Dataset

from scenarios.model import PlanSpec
from simulators.plans.dicom_reader import read_dataset_file

# family -> (module, function, names attribute, keyword of the plan kind)
_GENERATORS: dict[str, tuple[str, str, str, str]] = {
    "linac": ("simulators.plans.samples.linac", "sample_linac_plan", "SAMPLE_PLANS", "kind"),
    "brachy": ("simulators.plans.samples.brachy", "sample_brachy_plan", "SAMPLE_BRACHY_PLANS", "name"),
}
_ALLOWED_PARAMS = {"machine_name", "patient_id", "patient_name", "fractions"}


def _generator(family: str) -> tuple[Callable[..., Dataset], tuple[str, ...], str] | None:
    entry = _GENERATORS.get(family)
    if entry is None:
        return None
    module_name, function, names, kind_keyword = entry
    try:
        module = import_module(module_name)
    except ImportError:
        return None
    return getattr(module, function), tuple(getattr(module, names)), kind_keyword


def sample_names() -> list[str]:
    """Every ``family:kind`` the bundled generators offer."""
    out = []
    for family in _GENERATORS:
        found = _generator(family)
        if found is not None:
            out += [f"{family}:{kind}" for kind in found[1]]
    return out


def check_sample(sample: str, params: dict[str, Any]) -> str | None:
    """Why ``sample`` with ``params`` cannot be generated (None when it can)."""
    family, _, kind = sample.partition(":")
    found = _generator(family)
    if found is None or kind not in found[1]:
        return f"{sample!r} is not a bundled sample plan (available: {', '.join(sample_names())})"
    function = found[0]
    accepted = set(inspect.signature(function).parameters) & _ALLOWED_PARAMS
    unknown = sorted(set(params) - accepted)
    if unknown:
        return f"{sample!r}: unknown params {', '.join(unknown)} (accepted: {', '.join(sorted(accepted))})"
    return None


def build_plan(spec: PlanSpec, source: Any = None) -> Dataset:
    """The plan's dataset (samples are cached per process: treat the result as read-only).

    ``source``: the afterloader's installed source, for brachy samples (dwell times for its strength).
    """
    if spec.file is not None:
        return read_dataset_file(spec.file)
    assert spec.sample is not None
    family, _, kind = spec.sample.partition(":")
    extra = {"source": source} if source is not None and family == "brachy" else {}
    key = (spec.sample, tuple(sorted((k, repr(v)) for k, v in {**spec.params, **extra}.items())))
    if key not in _CACHE:
        found = _generator(family)
        assert found is not None
        function, _, kind_keyword = found
        _CACHE[key] = function(**{kind_keyword: kind}, **spec.params, **extra)
    return _CACHE[key]


_CACHE: dict[tuple, Dataset] = {}  # sample generators are deterministic (UIDs from the patient and kind)
