"""Can this machine deliver this plan? Every refusal reason, as a treatment console would list them.

:func:`check_plan` compares a :class:`LinacPlan` with a :class:`MachineModel` and returns every reason
to refuse (an empty list means deliverable). Each reason names the beam (number and name), the control
point and the DICOM attribute where that applies. :func:`require_deliverable` raises
:class:`PlanRefusedError` with those reasons, which is what callers do before any beam is delivered.

Decisions a physicist may want to know about:

* A leaf pair closed at 0 mm (how planning systems write closed pairs, e.g. every Eclipse plan in the
  IHE-RO data) is accepted: the MLC closes such a pair to its minimum gap. A pair opened to a gap
  between 0 and the minimum gap, or overlapping leaves (negative gap), is refused.
* Setup beams (Treatment Delivery Type SETUP) are only checked for the machine name.
* Wedges match on type and angle (plans add the orientation to the ID: "W60R15", "EDW20IN"); at
  most one wedge may be IN at a control point (no console combines two wedges).
* Source-Axis Distance must equal the machine's (1000 mm for every C-arm linac modelled, or
  ``machine.extra["source_axis_distance_mm"]``); photon applicators (cones) must be listed in
  ``machine.extra["photon_applicators"]`` since the schema has only electron applicators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from machine_models.schema import DeviceKind, Energy, JawModel, LinacModel, MachineModel, MlcModel
from simulators.errors import PlanRefusedError
from simulators.plans.model import LinacBeam, LinacPlan

__all__ = ["DEFAULT_SOURCE_AXIS_DISTANCE_MM", "PlanRefusedError", "check_plan", "require_deliverable"]

DEFAULT_SOURCE_AXIS_DISTANCE_MM = 1000.0
POSITION_TOLERANCE_MM = 0.01  # plan values are DS strings; allow for their rounding
CLOSED_PAIR_TOLERANCE_MM = 0.01  # |gap| below this is a closed pair
ANGLE_TOLERANCE_DEG = 0.01
DOSE_RATE_TOLERANCE_MU_PER_MIN = 1e-6
ENERGY_TOLERANCE_MEV = 1e-3
SAD_TOLERANCE_MM = 0.5


def check_plan(
    plan: LinacPlan,
    machine: MachineModel,
    *,
    answers_to: str | None = None,
    require_approved: bool = True,
) -> list[str]:
    """Every reason this machine refuses ``plan``; empty when it can deliver it.

    ``answers_to`` is the Treatment Machine Name this installation answers to (``--machine-name``);
    by default the model's own ``treatment_machine_name``. ``require_approved`` refuses any plan whose
    Approval Status is not APPROVED, as a clinical console does.
    """
    reasons: list[str] = []
    label = plan.identity.label or plan.identity.sop_instance_uid
    if require_approved and plan.identity.approval_status != "APPROVED":
        status = plan.identity.approval_status or "absent"
        reasons.append(
            f"RT Plan '{label}': Approval Status (300E,0002) is {status};"
            " this machine delivers APPROVED plans only"
        )
    if machine.kind != DeviceKind.LINAC or machine.linac is None:
        reasons.append(
            f"machine model {machine.model_id} is a {machine.kind.value}, not a linac: it cannot deliver"
            f" RT Plan '{label}' beams"
        )
        return reasons
    name = answers_to if answers_to else machine.treatment_machine_name
    for beam in plan.beams:
        reasons.extend(_check_beam(beam, machine, machine.linac, name))
    return reasons


def require_deliverable(
    plan: LinacPlan,
    machine: MachineModel,
    *,
    answers_to: str | None = None,
    require_approved: bool = True,
) -> None:
    """Raise :class:`PlanRefusedError` listing every reason when :func:`check_plan` finds any."""
    reasons = check_plan(plan, machine, answers_to=answers_to, require_approved=require_approved)
    if reasons:
        raise PlanRefusedError(reasons)


# --------------------------------------------------------------------------------------------------
# per beam


def _beam_label(beam: LinacBeam) -> str:
    return f"beam {beam.number} '{beam.name}'"


def _at_cps(beam: LinacBeam, rows: np.ndarray) -> str:
    """``"control point 4"`` or ``"control point 4 (and 12 more)"`` for the rows where a check fails."""
    rows = np.unique(rows)
    first = int(beam.control_point_indices[int(rows[0])])
    more = f" (and {rows.size - 1} more)" if rows.size > 1 else ""
    return f"control point {first}{more}"


def _check_beam(beam: LinacBeam, machine: MachineModel, linac: LinacModel, answers_to: str) -> list[str]:
    who = _beam_label(beam)
    reasons: list[str] = []
    if beam.treatment_machine_name != answers_to:
        reasons.append(
            f"{who}: Treatment Machine Name (300A,00B2) is '{beam.treatment_machine_name}' but this machine"
            f" ({machine.model_id}) answers to '{answers_to}'; if this machine should deliver it, run with"
            f" --machine-name {beam.treatment_machine_name}"
        )
    if beam.treatment_delivery_type == "SETUP":
        return reasons
    if beam.primary_dosimeter_unit != "MU":
        reasons.append(
            f"{who}: Primary Dosimeter Unit (300A,00B3) is {beam.primary_dosimeter_unit}; this machine"
            " meters in MU only"
        )
    if beam.beam_meterset_mu <= 0:
        reasons.append(
            f"{who}: no Beam Meterset (300A,0086) for this beam in any fraction group; nothing to deliver"
        )
    sad_mm = float(machine.extra.get("source_axis_distance_mm", DEFAULT_SOURCE_AXIS_DISTANCE_MM))
    if (
        not np.isfinite(beam.source_axis_distance_mm)
        or abs(beam.source_axis_distance_mm - sad_mm) > SAD_TOLERANCE_MM
    ):
        reasons.append(
            f"{who}: Source-Axis Distance (300A,00B4) is {beam.source_axis_distance_mm:g} mm; this machine's"
            f" is {sad_mm:g} mm"
        )
    reasons.extend(_check_energy(beam, linac))
    reasons.extend(_check_rotations(beam, linac))
    reasons.extend(_check_devices(beam, linac))
    reasons.extend(_check_wedges(beam, linac))
    reasons.extend(_check_applicator(beam, machine, linac))
    return reasons


def _energy_text(radiation_type: str, energy_mev: float, fluence_mode_id: str | None) -> str:
    unit = "MeV" if radiation_type == "ELECTRON" else "MV"
    fluence = f" {fluence_mode_id}" if fluence_mode_id else ""
    return f"{radiation_type} {energy_mev:g} {unit}{fluence}"


def _find_energy(beam: LinacBeam, linac: LinacModel) -> Energy | None:
    for energy in linac.energies:
        if (
            energy.radiation_type == beam.radiation_type
            and abs(energy.nominal_energy_mev - beam.nominal_energy_mev) <= ENERGY_TOLERANCE_MEV
            and (energy.fluence_mode_id or None) == (beam.fluence_mode_id or None)
        ):
            return energy
    return None


def _check_energy(beam: LinacBeam, linac: LinacModel) -> list[str]:
    who = _beam_label(beam)
    types = sorted({e.radiation_type for e in linac.energies})
    if beam.radiation_type not in types:
        return [
            f"{who}: Radiation Type (300A,00C6) is {beam.radiation_type}; this machine delivers"
            f" {' and '.join(types)} beams only"
        ]
    energy = _find_energy(beam, linac)
    if energy is None:
        installed = ", ".join(e.label for e in linac.energies)
        return [
            f"{who}: Nominal Beam Energy (300A,0114) / Fluence Mode (3002,0051):"
            f" {_energy_text(beam.radiation_type, beam.nominal_energy_mev, beam.fluence_mode_id)} is not"
            f" installed on this machine (installed: {installed})"
        ]
    rates = beam.dose_rate_set_mu_per_min
    over = np.flatnonzero(
        np.nan_to_num(rates, nan=0.0) > energy.max_dose_rate_mu_per_min + DOSE_RATE_TOLERANCE_MU_PER_MIN
    )
    if over.size:
        worst = float(np.nanmax(rates))
        return [
            f"{who}, {_at_cps(beam, over)}: Dose Rate Set (300A,0115) {worst:g} MU/min is above the"
            f" maximum {energy.max_dose_rate_mu_per_min:g} MU/min of {energy.label}"
        ]
    return []


def _angle_outside(angles_deg: np.ndarray, low: float, high: float) -> np.ndarray:
    """Rows where no equivalent of the angle (a, a - 360, a + 360) lies within [low, high]."""
    ok = np.zeros(angles_deg.shape, dtype=bool)
    for shift in (-360.0, 0.0, 360.0):
        shifted = angles_deg + shift
        ok |= (shifted >= low - ANGLE_TOLERANCE_DEG) & (shifted <= high + ANGLE_TOLERANCE_DEG)
    return ~ok & np.isfinite(angles_deg)


def _check_rotations(beam: LinacBeam, linac: LinacModel) -> list[str]:
    reasons = []
    for values, axis, attribute in (
        (beam.gantry_deg, linac.gantry, "Gantry Angle (300A,011E)"),
        (beam.collimator_deg, linac.collimator, "Beam Limiting Device Angle (300A,0120)"),
        (beam.couch_deg, linac.couch_rotation, "Patient Support Angle (300A,0122)"),
    ):
        if axis.max_position - axis.min_position >= 360.0 - ANGLE_TOLERANCE_DEG:
            continue
        rows = np.flatnonzero(_angle_outside(values, axis.min_position, axis.max_position))
        if rows.size:
            reasons.append(
                f"{_beam_label(beam)}, {_at_cps(beam, rows)}: {attribute} {values[rows[0]]:g} deg is outside"
                f" the {axis.name} range {axis.min_position:g}..{axis.max_position:g} deg"
            )
    return reasons


def _check_devices(beam: LinacBeam, linac: LinacModel) -> list[str]:
    reasons = []
    for device_type, jaws_mm in (
        (beam.jaw_x_device_type, beam.jaw_x_mm),
        (beam.jaw_y_device_type, beam.jaw_y_mm),
    ):
        if device_type is None or jaws_mm is None:
            continue
        jaw = next((j for j in linac.jaws if device_type in j.device_types), None)
        if jaw is None:
            have = ", ".join(t for j in linac.jaws for t in j.device_types)
            reasons.append(
                f"{_beam_label(beam)}: RT Beam Limiting Device Type (300A,00B8) {device_type}: this machine"
                f" has no such jaws (it has {have})"
            )
            continue
        reasons.extend(_check_jaws(beam, device_type, jaws_mm, jaw))
    if beam.mlc_device_type is not None and beam.mlc_mm is not None:
        reasons.extend(_check_mlc(beam, linac.mlc))
    return reasons


def _check_jaws(beam: LinacBeam, device_type: str, jaws_mm: np.ndarray, jaw: JawModel) -> list[str]:
    who = _beam_label(beam)
    axis = device_type[-1]  # X or Y
    attribute = f"Leaf/Jaw Positions (300A,011C) for {device_type}"
    tol = POSITION_TOLERANCE_MM
    checks: list[tuple[np.ndarray, Callable[[int], str]]] = [
        (
            np.flatnonzero(jaws_mm[:, 0] < jaw.min_position_mm - tol),
            lambda r: (
                f"{axis}1 at {jaws_mm[r, 0]:g} mm is beyond its travel limit {jaw.min_position_mm:g} mm"
            ),
        ),
        (
            np.flatnonzero(jaws_mm[:, 1] > jaw.max_position_mm + tol),
            lambda r: (
                f"{axis}2 at {jaws_mm[r, 1]:g} mm is beyond its travel limit {jaw.max_position_mm:g} mm"
            ),
        ),
        (
            np.flatnonzero(jaws_mm[:, 0] > jaw.max_overtravel_mm + tol),
            lambda r: (
                f"{axis}1 at {jaws_mm[r, 0]:g} mm crosses the central axis by more than the"
                f" {jaw.max_overtravel_mm:g} mm over-travel"
            ),
        ),
        (
            np.flatnonzero(jaws_mm[:, 1] < -jaw.max_overtravel_mm - tol),
            lambda r: (
                f"{axis}2 at {jaws_mm[r, 1]:g} mm crosses the central axis by more than the"
                f" {jaw.max_overtravel_mm:g} mm over-travel"
            ),
        ),
        (
            np.flatnonzero(jaws_mm[:, 0] > jaws_mm[:, 1] + tol),
            lambda r: (
                f"{axis}1 at {jaws_mm[r, 0]:g} mm is past {axis}2 at {jaws_mm[r, 1]:g} mm (jaws overlap)"
            ),
        ),
    ]
    return [
        f"{who}, {_at_cps(beam, rows)}: {attribute}: {text(int(rows[0]))}"
        for rows, text in checks
        if rows.size
    ]


def _check_mlc(beam: LinacBeam, mlc: MlcModel | None) -> list[str]:
    who = _beam_label(beam)
    assert beam.mlc_mm is not None
    assert beam.mlc_device_type is not None
    pairs = beam.mlc_mm.shape[2]
    if mlc is None:
        return [
            f"{who}: RT Beam Limiting Device Type (300A,00B8) {beam.mlc_device_type} ({pairs} leaf pairs)"
            " is in the plan but this machine has no MLC"
        ]
    if beam.mlc_device_type != mlc.device_type:
        return [
            f"{who}: RT Beam Limiting Device Type (300A,00B8) is {beam.mlc_device_type}"
            f" but this machine's MLC is {mlc.device_type}"
        ]
    if pairs != mlc.leaf_pair_count:
        return [
            f"{who}: Number of Leaf/Jaw Pairs (300A,00BC) for {beam.mlc_device_type} is {pairs} but this"
            f" machine's MLC has {mlc.leaf_pair_count} pairs: the plan is for a different MLC"
        ]
    plan_bounds = np.asarray(beam.mlc_leaf_boundaries_mm or ())
    machine_bounds = np.asarray(mlc.leaf_boundaries_mm)
    if plan_bounds.shape != machine_bounds.shape or not np.allclose(
        plan_bounds, machine_bounds, atol=POSITION_TOLERANCE_MM
    ):
        # Leaf positions of another MLC say nothing about this one: stop at the geometry.
        return [
            f"{who}: Leaf Position Boundaries (300A,00BE) {_describe_boundaries(plan_bounds)} do not match"
            f" this machine's MLC {_describe_boundaries(machine_bounds)}: the plan is for a different MLC"
        ]

    reasons = []

    leaves = beam.mlc_mm  # (n, 2, pairs): bank A, bank B
    bank_a, bank_b = leaves[:, 0, :], leaves[:, 1, :]
    tol = POSITION_TOLERANCE_MM
    attribute = f"Leaf/Jaw Positions (300A,011C) for {beam.mlc_device_type}"

    def leaf_text(row: int, bank: int, pair: int) -> str:
        return f"leaf {'AB'[bank]}{pair + 1} at {leaves[row, bank, pair]:g} mm"

    outside = (leaves < mlc.min_position_mm - tol) | (leaves > mlc.max_position_mm + tol)
    if outside.any():
        row, bank, pair = (int(v) for v in np.argwhere(outside)[0])
        reasons.append(
            f"{who}, {_at_cps(beam, np.flatnonzero(outside.any(axis=(1, 2))))}: {attribute}:"
            f" {leaf_text(row, bank, pair)} is outside the leaf travel"
            f" {mlc.min_position_mm:g}..{mlc.max_position_mm:g} mm"
        )

    spread = leaves.max(axis=2) - leaves.min(axis=2)  # (n, 2)
    too_wide = spread > mlc.max_leaf_spread_mm + tol
    if too_wide.any():
        row, bank = (int(v) for v in np.argwhere(too_wide)[0])
        reasons.append(
            f"{who}, {_at_cps(beam, np.flatnonzero(too_wide.any(axis=1)))}: {attribute}: bank {'AB'[bank]}"
            f" spreads {spread[row, bank]:.1f} mm, more than the maximum leaf spread"
            f" {mlc.max_leaf_spread_mm:g} mm"
        )

    gap = bank_b - bank_a
    closed = np.abs(gap) <= CLOSED_PAIR_TOLERANCE_MM
    overlap = (gap < -tol) & ~closed
    if overlap.any():
        row, pair = (int(v) for v in np.argwhere(overlap)[0])
        reasons.append(
            f"{who}, {_at_cps(beam, np.flatnonzero(overlap.any(axis=1)))}: {attribute}: leaf pair {pair + 1}"
            f" overlaps (A {bank_a[row, pair]:g} mm is past B {bank_b[row, pair]:g} mm)"
        )
    narrow = (gap >= -tol) & ~closed & (gap < mlc.min_leaf_gap_mm - tol)
    if narrow.any():
        row, pair = (int(v) for v in np.argwhere(narrow)[0])
        reasons.append(
            f"{who}, {_at_cps(beam, np.flatnonzero(narrow.any(axis=1)))}: {attribute}: leaf pair {pair + 1}"
            f" gap {gap[row, pair]:.2f} mm is below the minimum leaf gap {mlc.min_leaf_gap_mm:g} mm"
        )

    if not mlc.interdigitation and pairs > 1:
        # A leaf of bank A may not pass the bank B leaf of a neighbouring pair, and vice versa.
        cross = (bank_a[:, :-1] > bank_b[:, 1:] + tol) | (bank_a[:, 1:] > bank_b[:, :-1] + tol)
        if cross.any():
            row, pair = (int(v) for v in np.argwhere(cross)[0])
            reasons.append(
                f"{who}, {_at_cps(beam, np.flatnonzero(cross.any(axis=1)))}: {attribute}: leaf pairs"
                f" {pair + 1} and {pair + 2} interdigitate, which this MLC does not allow"
            )
    return reasons


def _describe_boundaries(bounds: np.ndarray) -> str:
    if bounds.size < 2:
        return "(none)"
    widths = sorted({round(float(w), 2) for w in np.diff(bounds)})
    width_text = "/".join(f"{w:g}" for w in widths)
    return f"({bounds.size - 1} pairs, {bounds[0]:g}..{bounds[-1]:g} mm, widths {width_text} mm)"


def _check_wedges(beam: LinacBeam, linac: LinacModel) -> list[str]:
    who = _beam_label(beam)
    reasons = []
    for wedge in beam.wedges:
        # Plans name wedges with their orientation ("W60R15", "EDW20IN"): match on type and angle.
        if not any(
            w.wedge_type.upper() == wedge.wedge_type
            and abs(w.angle_deg - wedge.angle_deg) <= ANGLE_TOLERANCE_DEG
            for w in linac.wedges
        ):
            have = ", ".join(f"{w.wedge_type} {w.angle_deg:g} deg" for w in linac.wedges) or "none"
            reasons.append(
                f"{who}: Wedge Sequence (300A,00D1) wedge {wedge.number} '{wedge.wedge_id}'"
                f" ({wedge.wedge_type}, {wedge.angle_deg:g} deg) is not available on this machine"
                f" (available: {have})"
            )
    if beam.wedge_in.size:
        several = np.flatnonzero(beam.wedge_in.sum(axis=1) > 1)
        if several.size:
            names = [
                f"{w.number} '{w.wedge_id}' {w.wedge_type}"
                for w, inserted in zip(beam.wedges, beam.wedge_in[several[0]], strict=True)
                if inserted
            ]
            reasons.append(
                f"{who}, {_at_cps(beam, several)}: Wedge Position (300A,0118): {len(names)} wedges IN at once"
                f" ({', '.join(names)}); this machine uses one wedge at a time"
            )
    return reasons


def _photon_applicators(machine: MachineModel) -> Sequence[str]:
    value = machine.extra.get("photon_applicators", ())
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()


def _check_applicator(beam: LinacBeam, machine: MachineModel, linac: LinacModel) -> list[str]:
    who = _beam_label(beam)
    if beam.radiation_type == "ELECTRON":
        if beam.applicator_id is None:
            return [f"{who}: ELECTRON beam without an applicator (Applicator Sequence (300A,0107))"]
        if beam.applicator_id not in linac.electron_applicators:
            have = ", ".join(linac.electron_applicators) or "none"
            return [
                f"{who}: Applicator ID (300A,0108) '{beam.applicator_id}' is not an electron applicator of"
                f" this machine (available: {have})"
            ]
        return []
    if beam.applicator_id is not None:
        cones = _photon_applicators(machine)
        if beam.applicator_id not in cones:
            have = ", ".join(cones) or "none"
            kind = beam.applicator_type or "type not given"
            return [
                f"{who}: Applicator ID (300A,0108) '{beam.applicator_id}' ({kind}) is not a photon applicator"
                f" of this machine (available: {have})"
            ]
    return []
