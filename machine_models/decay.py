"""Radioactive decay of a brachytherapy source, and the dwell-time correction it asks for (pure functions).

Source strength (reference air kerma rate, RAKR) falls as ``S(t) = S(t0) * 2 ** (-(t - t0) / T_half)``.
A plan's dwell times were computed for the strength the plan states (its Reference Air Kerma Rate at its
Source Strength Reference Date/Time); at treatment the installed source has decayed, so each dwell time is
multiplied by ``S_plan / S_installed(treatment time)`` (reference notes machine-models.md §5.1, H):
``t_dwell(treat) = t_dwell(plan) * S_K(plan) / S_K(treat)``.

Worked numbers: Ir-192 (73.83 d) after one half-life has half its strength, so dwell times double; after
90 days 2 ** (-90 / 73.83) = 0.4298 of the strength remains (the "43 %" of the reference table).
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime

from machine_models.schema import MachineModel

SECONDS_PER_DAY = 86400.0


def elapsed_days(start: datetime, end: datetime) -> float:
    """Days from ``start`` to ``end`` (negative if ``end`` is earlier). Both naive or both aware."""
    return (end - start).total_seconds() / SECONDS_PER_DAY


def decay_fraction(half_life_days: float, days: float) -> float:
    """The fraction ``2 ** (-days / half_life_days)`` of the strength left after ``days``."""
    if not (math.isfinite(half_life_days) and half_life_days > 0):
        raise ValueError(f"half-life must be a positive number of days, got {half_life_days!r}")
    if not math.isfinite(days):
        raise ValueError(f"elapsed time must be finite, got {days!r} days")
    return 2.0 ** (-days / half_life_days)


def strength_at(
    reference_strength: float, reference_time: datetime, half_life_days: float, when: datetime
) -> float:
    """Source strength at ``when`` given its value at ``reference_time`` (same unit as the input)."""
    return reference_strength * decay_fraction(half_life_days, elapsed_days(reference_time, when))


def dwell_time_factor(
    plan_strength: float,
    installed_strength: float,
    installed_calibration: datetime,
    half_life_days: float,
    treatment_time: datetime,
) -> float:
    """The factor every planned dwell time is multiplied by at ``treatment_time``.

    ``plan_strength`` is the strength the plan's dwell times were computed for; the installed source had
    ``installed_strength`` at ``installed_calibration``. Factor = plan strength / installed strength now.
    """
    if not (plan_strength > 0 and installed_strength > 0):
        raise ValueError(
            f"source strengths must be > 0, got plan {plan_strength!r} and installed {installed_strength!r}"
        )
    now = strength_at(installed_strength, installed_calibration, half_life_days, treatment_time)
    return plan_strength / now


def with_source_calibrated(model: MachineModel, calibration: datetime) -> MachineModel:
    """``model`` with its afterloader source exchanged: the same certified strength at ``calibration``.

    The bundled files carry a placeholder certificate date; a demo or a test run today uses this so that
    dwell times are corrected for days of decay, not years (a real site edits its model at every exchange).
    """
    if model.afterloader is None:
        raise ValueError(f"machine {model.model_id} has no afterloader source")
    source = dataclasses.replace(model.afterloader.source, calibration_datetime=calibration)
    return dataclasses.replace(model, afterloader=dataclasses.replace(model.afterloader, source=source))
