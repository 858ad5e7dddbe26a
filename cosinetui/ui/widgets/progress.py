"""The progress bar of the epoch in progress."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from cosinetui.history import History
from cosinetui.ui.widgets.status import in_progress


class EpochProgress(Horizontal):
    DEFAULT_CSS = """
    EpochProgress { height: 1; }
    EpochProgress > Label { width: auto; padding: 0 1 0 0; }
    EpochProgress > ProgressBar { width: 1fr; }
    EpochProgress > ProgressBar > Bar { width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._version = -1

    def compose(self) -> ComposeResult:
        yield Label("epoch -", id="epoch-label")
        yield ProgressBar(total=1, show_eta=False, id="epoch-bar")

    def update_from(self, history: History) -> None:
        if history.version == self._version:
            return
        self._version = history.version
        run = history.run
        bar = self.query_one(ProgressBar)
        label = self.query_one(Label)
        spe = run.steps_per_epoch if run else 0
        epoch = in_progress(history)
        done = history.batches_in_epoch if epoch != history.epochs_done else spe
        label.update(f"epoch {epoch}/{history.total_epochs}" + (f" {done}/{spe}" if spe else ""))
        if spe:
            bar.update(total=spe, progress=min(done, spe))
        else:
            bar.update(total=None if history.state == "running" else 1, progress=0)
