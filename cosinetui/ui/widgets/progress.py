"""The progress bar of the epoch in progress."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from cosinetui.history import History
from cosinetui.ui.widgets.status import in_progress


class EpochProgress(Horizontal):
    """The label has a fixed width per run (the widest it can get), so an update repaints the
    label and the bar without a layout pass over the screen, and the bar does not move."""

    DEFAULT_CSS = """
    EpochProgress { height: 1; }
    EpochProgress > Label { width: auto; padding: 0 1 0 0; }
    EpochProgress > ProgressBar { width: 1fr; }
    EpochProgress > ProgressBar > Bar { width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._version = -1
        self._shown: tuple | None = None
        self._run: object = None
        self._width = 0

    def compose(self) -> ComposeResult:
        yield Label("epoch -", id="epoch-label")
        yield ProgressBar(total=1, show_eta=False, id="epoch-bar")

    def update_from(self, history: History) -> None:
        if history.version == self._version:
            return
        self._version = history.version
        run = history.run
        spe = run.steps_per_epoch if run else 0
        epoch = in_progress(history)
        done = history.batches_in_epoch if epoch != history.epochs_done else spe
        text = f"epoch {epoch}/{history.total_epochs}" + (f" {done}/{spe}" if spe else "")
        if spe:
            total, progress = spe, min(done, spe)
        else:
            total, progress = (None if history.state == "running" else 1), 0
        shown = (text, total, progress)
        if shown == self._shown:
            return
        self._shown = shown
        label = self.query_one(Label)
        width = self._width
        if run is not self._run:
            self._run = run
            widest = f"epoch {run.epochs}/{run.epochs}" if run else text
            widest += f" {spe}/{spe}" if spe else ""
            width = len(widest) + 1  # + the padding on the right
        width = max(width, len(text) + 1)  # never cut the text (a longer epoch, say)
        if width != self._width:
            self._width = width
            label.styles.width = width  # the one layout pass, once per run
        label.update(text, layout=False)
        self.query_one(ProgressBar).update(total=total, progress=progress)
