"""The help screen (? or F1): the dashboard's own keys, by area. Escape closes it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# (area, [(keys, what they do)]): the keys of the app's bindings, grouped as a user looks
# for them. A test checks that every binding of the app appears here. A fix key works while a
# warning shows it; a schedule fix opens the form prefilled.
AREAS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Run control",
        [
            ("space, p", "pause at the next batch / resume"),
            ("s", "save a checkpoint now"),
            ("d", "detach: the run trains on without you"),
            ("q, Ctrl+C, Ctrl+Q", "quit: stop (y), detach (d) or cancel"),
        ],
    ),
    (
        "Schedule",
        [
            ("a", "adjust: reanneal, retime, restart"),
            ("r", "warm restart to the peak (asks first)"),
        ],
    ),
    ("Plots", [("l", "log10 of the losses")]),
    (
        "Epoch table",
        [
            ("Tab", "focus the table, then the warnings"),
            ("↑ ↓ PgUp PgDn Home", "scroll; the table stops following"),
            ("End", "back to the newest epoch, following"),
        ],
    ),
    (
        "Warnings' fixes",
        [
            ("h", "lower the LR (reanneal, factor < 1)"),
            ("n", "anneal to the floor now"),
            ("e", "retime the schedule"),
            ("w", "warm restart"),
            ("c", "save a checkpoint"),
        ],
    ),
    (
        "Anywhere",
        [
            ("?, F1", "this help (Escape closes it)"),
            ("Ctrl+P", "palette: actions, theme, screenshot"),
        ],
    ),
]


def help_table() -> Table:
    """One row per key, the area named on its first row: fits 80x24 without scrolling."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for area, rows in AREAS:
        for i, (keys, what) in enumerate(rows):
            table.add_row(Text(area, style="bold") if i == 0 else "", keys, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,f1,q", "close", "close", id="help.close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_table(), id="help-keys")

    def on_mount(self) -> None:
        box = self.query_one("#help")
        box.border_title = "Keys"
        box.border_subtitle = "esc close"

    def action_close(self) -> None:
        self.dismiss(None)
