"""Idle established associations kept for reuse, one per key (the device's peers, the TMS's C-MOVE
destinations): consecutive operations skip association set-up and release (~10 ms each on loopback
with pynetdicom), still one DIMSE exchange in flight per association at a time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

from pynetdicom.association import Association

LOG = logging.getLogger(__name__)

PoolKey = Hashable  # the device: (calling AE, host, port, called AE)
Contexts = list[tuple[str, list[str] | None]]  # (abstract syntax, transfer syntaxes or None: default)


def _covers(assoc: Association, contexts: Contexts) -> bool:
    """Whether ``assoc`` accepted every context; with transfer syntaxes, the first one (the data's)."""
    accepted: dict[str, set[str]] = {}
    for cx in assoc.accepted_contexts:
        accepted.setdefault(str(cx.abstract_syntax), set()).update(str(ts) for ts in cx.transfer_syntax)
    for abstract, syntaxes in contexts:
        if abstract not in accepted or (syntaxes and str(syntaxes[0]) not in accepted[abstract]):
            return False
    return True


class AssociationPool:
    """Idle established associations, one per key (a calling AE and its peer), reused by consecutive
    operations.

    Thread-safe: :meth:`take` checks an association out (no other thread can use it meanwhile) and
    :meth:`give_back` returns it. An association idle longer than ``max_idle_s``, or no longer
    established (the peer released, aborted or restarted), is never reused; a timer releases idle ones
    after ``max_idle_s``, so no association is held open between a device's polls (an open pynetdicom
    association keeps two threads polling every millisecond on each side). :meth:`close` releases all.
    """

    def __init__(self, max_idle_s: float = 0.5) -> None:
        self.max_idle_s = max_idle_s
        self._idle: dict[PoolKey, tuple[Association, float]] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Timer | None = None

    def take(self, key: PoolKey, contexts: Contexts) -> Association | None:
        """An idle association for ``key`` that accepted ``contexts``, or None."""
        with self._lock:
            found = self._idle.pop(key, None)
        if found is None:
            return None
        assoc, idle_since = found
        usable = assoc.is_established and not assoc.is_aborted and _covers(assoc, contexts)
        if usable and time.monotonic() - idle_since <= self.max_idle_s:
            return assoc
        release_quietly(assoc)  # gone, stale, or without the context this operation needs
        return None

    def give_back(self, key: PoolKey, assoc: Association) -> None:
        """Keep ``assoc`` for the next operation (or release it if one is already kept for ``key``)."""
        if not assoc.is_established:
            return
        with self._lock:
            previous = self._idle.pop(key, None)
            self._idle[key] = (assoc, time.monotonic())
            if self._reaper is None:
                self._reaper = threading.Timer(self.max_idle_s, self._reap)
                self._reaper.daemon = True
                self._reaper.start()
        if previous is not None:
            release_quietly(previous[0])

    def _reap(self) -> None:
        """Release the associations idle for ``max_idle_s``; re-arm while some are left."""
        now = time.monotonic()
        with self._lock:
            stale = [k for k, (_, since) in self._idle.items() if now - since >= self.max_idle_s]
            released = [self._idle.pop(k)[0] for k in stale]
            self._reaper = None
            if self._idle:
                oldest = min(since for _, since in self._idle.values())
                self._reaper = threading.Timer(max(0.05, oldest + self.max_idle_s - now), self._reap)
                self._reaper.daemon = True
                self._reaper.start()
        for assoc in released:
            release_quietly(assoc)

    def close(self) -> None:
        """Release every idle association."""
        with self._lock:
            idle, self._idle = list(self._idle.values()), {}
            reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
        for assoc, _ in idle:
            release_quietly(assoc)


def release_quietly(assoc: Association) -> None:
    try:
        if assoc.is_established:
            assoc.release()
    except Exception as exc:  # a peer gone away: nothing left to release
        LOG.debug("releasing a pooled association: %s", exc)
