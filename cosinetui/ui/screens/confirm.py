"""Confirmations: quit (stop and checkpoint, detach, or cancel) and warm restart (with its preview)."""

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


class QuitScreen(ModalScreen[str | None]):
    """Leaving a live run: stop it (checkpoint first), detach (it keeps training), or cancel.

    Dismisses with "stop", "detach" or None. Attached to another process's run, detaching is
    the default: leaving a dashboard never stops a run unless asked to.
    """

    BINDINGS = [
        Binding("escape,n", "choose('')", "cancel", id="quit.cancel"),
        Binding("y", "choose('stop')", "stop", id="quit.stop"),
        Binding("d", "choose('detach')", "detach", id="quit.detach"),
    ]

    def __init__(self, *, attached: bool = False) -> None:
        super().__init__()
        self.attached = attached

    def compose(self) -> ComposeResult:
        if self.attached:
            question = (
                "Leave this dashboard? Detach (d) leaves the run training; "
                "stop (y) ends it with a checkpoint."
            )
        else:
            question = (
                "Stop training (y)? The trainer saves a checkpoint, then cosinetui exits. "
                "Or detach (d): the run goes on in the background; cosinetui attach shows it again."
            )
        with Vertical(classes="dialog"):
            yield Static(question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Stop and checkpoint", id="stop", variant="error", compact=True)
                yield Button("Detach", id="detach", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(".dialog").border_title = "Quit"
        self.query_one("#detach" if self.attached else "#stop", Button).focus()

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice or None)

    def action_confirm(self) -> None:  # a second Ctrl+C
        self.dismiss("stop")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)


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
