"""Machine views, one per device kind, found through a registry.

A view is a widget that draws one :class:`~tui.snapshot.MachineSnapshot` of its kind (``show(snap,
model)``). A new device kind plugs in with ``@register_view("kind")`` in a module listed in
:data:`VIEW_MODULES`; a kind without a view gets :class:`GenericView` (counters and positions), never a
fake drawing. Tomotherapy and Gamma Knife have no simulator yet, so they have no view yet.
"""

from __future__ import annotations

from importlib import import_module

from tui.views.base import GenericView, MachineView

VIEW_MODULES = ("tui.views.linac", "tui.views.afterloader")

_VIEWS: dict[str, type[MachineView]] = {}


def register_view(kind: str):
    """Class decorator: use this view for machines of ``kind``."""

    def decorate(cls: type[MachineView]) -> type[MachineView]:
        _VIEWS[kind] = cls
        return cls

    return decorate


def _load() -> None:
    for name in VIEW_MODULES:
        import_module(name)


def view_for(kind: str) -> type[MachineView]:
    """The view class for ``kind`` (GenericView when the kind has none)."""
    _load()
    return _VIEWS.get(kind, GenericView)


def registered_kinds() -> list[str]:
    _load()
    return sorted(_VIEWS)


__all__ = ["GenericView", "MachineView", "register_view", "registered_kinds", "view_for"]
