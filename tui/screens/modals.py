"""Modal screens: the fault picker (instructor) and the key help."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui.faults import ConsoleFault


class FaultScreen(ModalScreen[str | None]):
    """Pick a fault to inject on a machine; dismisses with the fault name (None: cancelled)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, machine_id: str, faults: list[ConsoleFault]) -> None:
        super().__init__()
        self.machine_id = machine_id
        self.faults = faults

    def compose(self) -> ComposeResult:
        with Vertical(id="fault-dialog", classes="dialog"):
            yield Static(f"[b]Inject a fault on {self.machine_id}[/b]  (enter: inject, escape: cancel)")
            yield OptionList(
                *[Option(f"{f.title}\n  [dim]{f.description}[/dim]", id=f.name) for f in self.faults],
                id="fault-list",
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The key bindings, grouped as on a console."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog"):
            yield Static(self.text, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
