"""Confirmations: quit (stop and checkpoint, or cancel) and warm restart (with its preview)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from cosinetui.ui.widgets.plots import PreviewPlot


class Confirm(ModalScreen[bool]):
    """A question with a confirming and a cancelling button; Escape cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "cancel", id="confirm.cancel"),
        Binding("y", "confirm", "yes", id="confirm.yes"),
        Binding("n", "cancel", "no", id="confirm.no", show=False),
    ]

    def __init__(self, title: str, question: str, yes: str, *, danger: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.yes = yes
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            yield from self.compose_extra()
            with Horizontal(classes="buttons"):
                yield Button(
                    self.yes, id="yes", variant="error" if self.danger else "primary", compact=True
                )
                yield Button("Cancel", id="no", compact=True)

    def compose_extra(self) -> ComposeResult:
        return iter(())

    def on_mount(self) -> None:
        self.query_one(".dialog").border_title = self.title_text
        self.query_one("#yes", Button).focus()

    @on(Button.Pressed, "#yes")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_cancel(self) -> None:
        self.dismiss(False)


class QuitScreen(Confirm):
    def __init__(self) -> None:
        super().__init__(
            "Quit",
            "Stop training? The trainer saves a checkpoint, then cosinetui exits.",
            "Stop and checkpoint",
            danger=True,
        )


class RestartScreen(Confirm):
    """Asks before a warm restart and shows the curve it would give."""

    def __init__(self, description: str, preview: tuple | None, key: object) -> None:
        super().__init__("Warm restart", description, "Restart")
        self.preview = preview
        self.preview_key = key

    def compose_extra(self) -> ComposeResult:
        yield PreviewPlot(id="restart-preview")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(PreviewPlot).show(self.preview_key, self.preview)
