"""Pause Python's cyclic garbage collector around short, allocation-heavy steps.

Reading a plan or building a record creates tens of thousands of small, acyclic containers (one dict and
a few lists per control point). Each batch of 700 new containers triggers a collection that walks every
young object again, and the survivors push a full collection that walks the whole heap (pydicom's
dictionary, numpy, ...): in a fast-mode delivery that was 20-60 % of the wall time, in random spikes.
Pausing the collector for the few milliseconds of such a step, then letting it run as usual, costs one
ordinary collection later instead. Only for bounded, CPU-bound steps: never around a paced delivery
or a network wait. Thread-safe and nestable: the collector runs again when the last pause ends (if it
was enabled when the first began).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (reference counting still frees memory)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
