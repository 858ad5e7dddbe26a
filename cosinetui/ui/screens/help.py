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
# for them. A test checks that every binding of the app appears here.
AREAS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Run control",
        [
            ("space, p", "pause at the next batch boundary / resume"),
            ("s", "save a checkpoint now"),
            ("d", "detach: leave the dashboard, the run trains on"),
            ("q, Ctrl+C, Ctrl+Q", "quit: stop with a checkpoint (y), detach (d) or cancel"),
        ],
    ),
    (
        "Schedule",
        [
            ("a", "adjust the schedule (reanneal, retime, restart) with a preview"),
            ("r", "warm restart: back to the peak LR; asks first"),
        ],
    ),
    (
        "Plots",
        [("l", "loss plot: log10 of the losses")],
    ),
    (
        "Epoch table",
        [
            ("Tab", "move the focus between the table and the warnings"),
            ("↑ ↓ PgUp PgDn Home", "scroll (stops following the newest epoch)"),
            ("End", "back to the newest epoch, following again"),
        ],
    ),
    (
        "Warnings' fixes",
        [
            ("h", "lower the LR (reanneal with a factor below 1)"),
            ("n", "anneal to the floor now"),
            ("e", "retime the schedule"),
            ("w", "warm restart"),
            ("c", "save a checkpoint"),
            ("", "a fix key works while a warning shows it; schedule fixes open the form"),
        ],
    ),
    (
        "Anywhere",
        [
            ("?, F1", "this help"),
            ("Ctrl+P", "command palette: every action, themes, a screenshot"),
            ("Escape", "close a dialog or this help"),
        ],
    ),
]


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for i, (area, rows) in enumerate(AREAS):
        if i:
            table.add_row("", "")
        table.add_row(Text(area, style="bold underline"), "")
        for keys, what in rows:
            table.add_row(keys, what)
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
