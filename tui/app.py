"""The training console: a Textual app over a :class:`~tui.clinic.Clinic` (screens and bindings only).

The app never owns simulated time. A timer polls the clinic's trackers ``refresh_hz`` times a second and
redraws the active screen from immutable snapshots; every key calls a non-blocking clinic method (engine
commands are queued, network work runs on device threads).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen

from tui.clinic import SPEEDS, Clinic
from tui.screens.clinic import ClinicScreen
from tui.screens.machine import MachineScreen
from tui.screens.modals import FaultScreen, HelpScreen

CSS_FILE = Path(__file__).with_name("console.tcss")

HELP = """[b]rtsim training console[/b]: keys

[b]Operator[/b] (acts on the selected machine)
  [ / ]      previous / next machine          up/down  pick a worklist item
  p          prepare the selected item (RO-59..RO-61, then the machine moves to the first position)
  B          BEAM ON (shift+b: deliberate; refused with the door open or an interlock)
  space      interrupt (beam off key)          r        resume after an interrupt or a hold
  T          terminate the session (shift+t)   d        open / close the treatment-room door
  w          query the worklist again          a        auto mode on/off (the device works alone)
  v          machine view / clinic view        l        event log: this machine / all machines

[b]Instructor[/b]
  f          inject a fault on the selected machine     x   reset latching interlocks
  .          pause / run the clock      1 2 3 4   clock 1x, 2x, 10x, 60x

[b]Console[/b]
  ctrl+p     command palette (every action, every fault)      ?  this help      q  quit
"""


class ConsoleApp(App):
    """Clinic and machine screens over a clinic; ``make_console`` builds one for the CLI and the tests."""

    TITLE = "rtsim training console"
    CSS_PATH = str(CSS_FILE)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("B", "beam_on", "Beam on"),
        Binding("space", "interrupt", "Interrupt"),
        Binding("r", "resume", "Resume"),
        Binding("T", "terminate", "Terminate"),
        Binding("p", "prepare", "Prepare"),
        Binding("d", "door", "Door"),
        Binding("f", "faults", "Fault"),
        Binding("v", "toggle_view", "View"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("left_square_bracket", "machine(-1)", "Prev machine", show=False),
        Binding("right_square_bracket", "machine(1)", "Next machine", show=False),
        Binding("w", "worklist", "Worklist", show=False),
        Binding("a", "auto", "Auto", show=False),
        Binding("x", "clear_interlocks", "Reset interlocks", show=False),
        Binding("l", "log_filter", "Log filter", show=False),
        Binding("full_stop", "pause", "Pause", show=False),
        *[Binding(str(i + 1), f"speed({s})", f"{s:g}x", show=False) for i, s in enumerate(SPEEDS)],
    ]

    def __init__(self, clinic: Clinic, *, refresh_hz: float = 10.0, start_clinic: bool = True) -> None:
        super().__init__()
        self.clinic = clinic
        self.selected = next(iter(clinic.machines))
        self.refresh_hz = refresh_hz
        self.start_clinic = start_clinic
        self.frames = 0
        self.scenario = None  # a tui.scenario_play.ScenarioPlay when --scenario is given

    # ------------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        self.push_screen(ClinicScreen(name="clinic"))
        self._update_subtitle()
        if self.start_clinic:
            self.clinic.start()
        if self.refresh_hz > 0:
            self.set_interval(1.0 / self.refresh_hz, self.refresh_screen)
        self.call_after_refresh(self.refresh_screen)

    def on_unmount(self) -> None:
        if self.start_clinic:
            self.clinic.stop()

    def refresh_screen(self) -> None:
        """Redraw the active screen from fresh snapshots (UI thread; never blocks)."""
        try:
            screen = self.screen
        except ScreenStackError:
            return  # the app is shutting down: the refresh timer fired after the last screen went
        refresh = getattr(screen, "refresh_from", None)
        if refresh is None:
            return
        snaps = {mid: self.clinic.snapshot(mid) for mid in self.clinic.machines}
        try:
            refresh(snaps, self.selected)
        except NoMatches:
            return  # the screen is being built or torn down
        self.frames += 1

    def _update_subtitle(self) -> None:
        clock = "PAUSED" if self.clinic.paused else f"clock {self.clinic.speed:g}x"
        self.sub_title = f"{self.clinic.title} · {clock} · {self.selected}"

    # ------------------------------------------------------------------ selection
    def select_machine(self, machine_id: str) -> None:
        self.selected = machine_id
        self._update_subtitle()
        self.refresh_screen()

    def select_workitem(self, ups_uid: str) -> None:
        self.clinic.select(self.selected, ups_uid)

    def action_machine(self, step: int) -> None:
        ids = list(self.clinic.machines)
        self.select_machine(ids[(ids.index(self.selected) + step) % len(ids)])
        if isinstance(self.screen, MachineScreen):
            self.switch_screen(MachineScreen(self.selected))

    # ------------------------------------------------------------------ operator
    def _tell(self, refusal: str | None) -> None:
        if refusal:
            self.notify(refusal, severity="warning", timeout=4)

    def action_prepare(self) -> None:
        self._tell(self.clinic.prepare(self.selected))

    def action_beam_on(self) -> None:
        self._tell(self.clinic.beam_on(self.selected))

    def action_interrupt(self) -> None:
        self._tell(self.clinic.interrupt(self.selected))

    def action_resume(self) -> None:
        self._tell(self.clinic.resume(self.selected))

    def action_terminate(self) -> None:
        self._tell(self.clinic.terminate(self.selected))

    def action_door(self) -> None:
        self.clinic.toggle_door(self.selected)

    def action_worklist(self) -> None:
        self.clinic.refresh_worklist(self.selected)

    def action_auto(self) -> None:
        self.clinic.set_auto(self.selected, not self.clinic.machines[self.selected].auto)

    def action_toggle_view(self) -> None:
        if isinstance(self.screen, MachineScreen):
            self.pop_screen()
        else:
            self.push_screen(MachineScreen(self.selected))
        self.call_after_refresh(self.refresh_screen)

    def action_log_filter(self) -> None:
        from tui.widgets.event_log import EventLogPane

        for pane in self.screen.query(EventLogPane):
            pane.set_filter(None if pane.machine_filter else self.selected)

    # ------------------------------------------------------------------ instructor
    def action_faults(self) -> None:
        machine_id = self.selected

        def inject(name: str | None) -> None:
            if name:
                self._tell(self.clinic.inject(machine_id, name))

        self.push_screen(FaultScreen(machine_id, self.clinic.faults(machine_id)), inject)

    def action_clear_interlocks(self) -> None:
        self.clinic.clear_interlocks(self.selected)

    def action_pause(self) -> None:
        self.clinic.set_paused(not self.clinic.paused)
        self._update_subtitle()

    def action_speed(self, factor: float) -> None:
        self.clinic.set_speed(float(factor))
        self._update_subtitle()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(HELP))

    # ------------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        actions = [
            ("Prepare", "load the selected worklist item", self.action_prepare),
            ("Beam on", "release the beam on the selected machine", self.action_beam_on),
            ("Interrupt", "beam off key", self.action_interrupt),
            ("Resume", "resume after an interrupt or a hold", self.action_resume),
            ("Terminate", "end the session (OPERATOR)", self.action_terminate),
            ("Door open/close", "treatment-room door", self.action_door),
            ("Reset interlocks", "clear latching interlocks", self.action_clear_interlocks),
            ("Machine view", "toggle the machine view", self.action_toggle_view),
            ("Pause clock", "pause or run simulated time", self.action_pause),
        ]
        for title, help_text, callback in actions:
            yield SystemCommand(title, help_text, callback)
        for factor in SPEEDS:
            yield SystemCommand(
                f"Clock {factor:g}x", "simulated seconds per wall second", self._speed_cb(factor)
            )
        for mid in self.clinic.machines:
            yield SystemCommand(f"Select {mid}", "select this machine", self._select_cb(mid))
            for fault in self.clinic.faults(mid):
                yield SystemCommand(
                    f"Fault on {mid}: {fault.title}", fault.description, self._fault_cb(mid, fault.name)
                )

    def _speed_cb(self, factor: float):
        return lambda: self.action_speed(factor)

    def _select_cb(self, machine_id: str):
        return lambda: self.select_machine(machine_id)

    def _fault_cb(self, machine_id: str, name: str):
        return lambda: self._tell(self.clinic.inject(machine_id, name))


def make_console(clinic: Clinic, **options) -> ConsoleApp:
    """The console app for ``clinic`` (CLI and tests build it the same way)."""
    return ConsoleApp(clinic, **options)
