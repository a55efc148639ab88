"""The event log pane: every machine's events (or one machine's), newest at the bottom."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from tui.tracker import EventLog, LogLine

LEVEL_STYLES = {
    "alarm": "bold red",
    "warning": "dark_orange",
    "operator": "cyan",
    "beam": "bold yellow",
    "dicom": "grey62",
    "info": "",
}


def format_line(line: LogLine) -> Text:
    when = "       " if line.time_s is None else f"{line.time_s:6.1f}s"
    return Text.assemble(
        (when, "grey50"),
        " ",
        (f"{line.machine_id:8.8s}", "bold"),
        " ",
        (line.text, LEVEL_STYLES.get(line.level)),
    )


class EventLogPane(RichLog):
    """Shows lines of an :class:`EventLog`; ``machine_filter`` None shows every machine."""

    def __init__(self, log: EventLog, **kwargs) -> None:
        super().__init__(max_lines=1000, wrap=False, markup=False, highlight=False, **kwargs)
        self.source = log
        self.machine_filter: str | None = None
        self._seq = 0

    def poll(self) -> int:
        """Append the lines added since the last poll; returns how many were shown."""
        lines = self.source.since(self._seq)
        if lines:
            self._seq = lines[-1].seq
        shown = 0
        for line in lines:
            if self._keep(line):
                self.write(format_line(line))
                shown += 1
        return shown

    def _keep(self, line: LogLine) -> bool:
        return self.machine_filter is None or line.machine_id in (self.machine_filter, "clinic")

    def set_filter(self, machine_id: str | None) -> None:
        """Show only ``machine_id`` (None: all), re-reading what the log still holds."""
        self.machine_filter = machine_id
        self.clear()
        self._seq = 0
        self.poll()
