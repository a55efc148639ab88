"""Seeded Gaussian noise on "actual" axis positions (what a machine log shows against the plan).

Typical sizes (machine-models.md §2.4): TrueBeam leaf RMS ~0.01-0.03 mm, gantry within ~0.1 deg; the
standard deviation per axis comes from the machine model through ``DeliveryProgram.axis_noise_sd``.
Paired axes (jaws, MLC banks: second dimension of size 2, index 0 = jaw 1 / bank A) are made
consistent after the noise so opposing leaves and jaws never cross. Angles are left unwrapped, like the
program's positions (the program builder unwraps rotations; record writers wrap into [0, 360)).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

PAIRED_PREFIXES = ("jaw", "mlc")


def is_paired_axis(name: str, per_cp: np.ndarray) -> bool:
    """True for jaw/MLC axes whose per-control-point value has a leading dimension of 2."""
    return name.startswith(PAIRED_PREFIXES) and per_cp.ndim >= 1 and per_cp.shape[0] == 2


def uncross(pairs: np.ndarray) -> np.ndarray:
    """Where side 0 ended up beyond side 1 (axis 1 of ``(n, 2, ...)``), put both at their midpoint."""
    out = np.array(pairs, dtype=float, copy=True)
    lo, hi = out[:, 0], out[:, 1]
    crossed = lo > hi
    if np.any(crossed):
        mid = (lo + hi) / 2.0
        lo[crossed] = mid[crossed]
        hi[crossed] = mid[crossed]
    return out


class PositionNoise:
    """Adds N(0, sd) per axis value; axes without a positive sd are returned unchanged."""

    def __init__(self, sd_by_axis: Mapping[str, float], rng: np.random.Generator) -> None:
        for name, sd in sd_by_axis.items():
            if not (np.isfinite(sd) and sd >= 0):
                raise ValueError(f"axis noise sd for {name!r} must be finite and >= 0, got {sd!r}")
        self._sd = dict(sd_by_axis)
        self._rng = rng

    def perturb(self, positions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Actual positions for arrays whose first dimension is the control point.

        Axes are drawn in sorted-name order so the result depends only on the seed and the input.
        """
        out: dict[str, np.ndarray] = {}
        for name in sorted(positions):
            planned = np.asarray(positions[name])
            sd = self._sd.get(name, 0.0)
            if sd <= 0 or planned.size == 0 or not np.issubdtype(planned.dtype, np.number):
                out[name] = planned
                continue
            actual = planned + self._rng.normal(0.0, sd, size=planned.shape)
            if planned.ndim >= 2 and is_paired_axis(name, planned[0]):
                actual = uncross(actual)
            out[name] = actual
        return out

    def perturb_one(self, positions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Like :meth:`perturb` for the positions of a single control point."""
        stacked = {k: np.asarray(v)[np.newaxis, ...] for k, v in positions.items()}
        return {k: v[0] for k, v in self.perturb(stacked).items()}
