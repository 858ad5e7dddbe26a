"""`cosinetui show A B [C ...]`: several recorded runs overlaid, read-only.

The loss plot overlays each run's val loss (``t`` switches to the train loss), the LR plot
each run's LR as used; every run keeps one colour and one marker in both plots and in the
run list, and the legend names the runs. Below, one line a run (epochs, best val, last alert)
and the epoch table of each run in its own tab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual_plotext.plot import Plot

from cosinetui.diagnostics import diagnose
from cosinetui.events import Alert, Event
from cosinetui.history import History, Series, decimate
from cosinetui.readers import without_missing_train
from cosinetui.ui.format import fmt_loss
from cosinetui.ui.series import Envelope, log10_series, used_lr_series
from cosinetui.ui.widgets.epoch_table import EpochTable
from cosinetui.ui.widgets.plots import CachedPlot, _set_axes

# One colour and one marker a run, so that runs stay apart without colour too.
# ANSI colour numbers (bright cyan, yellow, magenta, green, red, blue, white, cyan), given to
# plotext as numbers (its names do not all match ANSI's) so the run list shows the same ones.
ANSI = (14, 11, 13, 10, 9, 12, 15, 6)
COLORS = ANSI
MARKERS = ("•", "+", "x", "*", "o", "#", "%", "@")
RICH_COLORS = tuple(f"color({n})" for n in ANSI)


@dataclass
class Run:
    name: str
    history: History
    alerts: list[Alert]  # the diagnostics' verdict (other tools' logs record none)

    @classmethod
    def of(cls, name: str, events: list[Event]) -> Run:
        history = History.from_events(events)
        return cls(name, history, without_missing_train(diagnose(history), events))


def style_of(index: int) -> tuple[int, str, str]:
    """(plotext colour, marker, rich colour) of the run at ``index``."""
    i = index % len(COLORS)
    return COLORS[i], MARKERS[i], RICH_COLORS[i]


def loss_overlay(runs: list[Run], which: str, buckets: int) -> list[Series]:
    """Each run's per-epoch ``which`` ("val" or "train") loss at x = epoch; a run without a
    val loss shows its train loss."""
    out = []
    for run in runs:
        h = run.history
        values = h.val_losses if which == "val" else h.train_losses
        if which == "val" and not any(math.isfinite(v) for v in values):
            values = h.train_losses
        out.append(decimate(values, buckets, x0=1))
    return out


def lr_overlay(runs: list[Run], buckets: int) -> list[Series]:
    return [used_lr_series(run.history, Envelope(), buckets) for run in runs]


class OverlayPlot(CachedPlot):
    """Curves of several runs, one colour and marker each, with a legend."""

    def set_curves(self, names: list[str], curves: list[Series], log: bool = False) -> None:
        if log:
            curves = [log10_series(c) for c in curves]
        key = (tuple(names), tuple((tuple(c.xs), tuple(c.ys)) for c in curves), log)
        self.show(key, (names, curves, log))

    def draw(self, plt: Plot, data: Any, width: int, height: int) -> bool | None:
        names, curves, log = data
        xs: list[float] = []
        ys: list[float] = []
        for i, (name, curve) in enumerate(zip(names, curves, strict=True)):
            if not curve.xs:
                continue
            color, marker, _ = style_of(i)
            plt.plot(curve.xs, curve.ys, marker=marker, color=color, label=name)
            xs += curve.xs
            ys += curve.ys
        if not xs:
            return False
        # plotext draws the legend over the top left of the data: leave it rows of its own.
        lo, hi = min(ys), max(ys)
        rows = len(names) + 1
        ys = [*ys, hi + (hi - lo or abs(hi) or 1.0) * rows / max(height - rows - 4, 2)]
        _set_axes(plt, xs, ys, height, width, log=log)
        return None


def summary_line(index: int, run: Run) -> Text:
    """One run: its marker in its colour, name, epochs, best val, last alert."""
    _, marker, color = style_of(index)
    h = run.history
    best = h.best_epoch
    text = Text()
    text.append(f"{marker} {run.name}", style=f"bold {color}")
    text.append(f"  {h.epochs_done}/{h.total_epochs or h.epochs_done} epochs")
    if best is not None and best.val_loss is not None:
        text.append(f"  best val {fmt_loss(best.val_loss)} (epoch {best.epoch})")
    if run.alerts:
        last = run.alerts[-1]
        text.append(f"  {last.severity} {last.kind}", style="yellow")
    return text


class CompareApp(App[int]):
    """Several recorded runs side by side; nothing here can change a run."""

    CSS = """
    #plots { height: 3fr; min-height: 8; }
    #plots > OverlayPlot { border: round $primary-darken-2; border-title-color: $text; }
    #runs { height: auto; max-height: 8; padding: 0 1; background: $boost; }
    #tables { height: 2fr; min-height: 6; }
    #tables EpochTable { height: 1fr; }
    """
    TITLE = "cosinetui: compare"

    BINDINGS = [
        Binding("t", "toggle_loss", "train/val", id="toggle_loss"),
        Binding("l", "log_scale", "log y", id="log_scale"),
        Binding("q", "quit", "quit", id="quit"),
    ]

    which: reactive[str] = reactive("val")
    log_scale: reactive[bool] = reactive(False)

    def __init__(self, runs: list[Run]) -> None:
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        self.loss_plot = OverlayPlot(id="loss-plot")
        self.lr_plot = OverlayPlot(id="lr-plot")
        with Vertical():
            with Horizontal(id="plots"):
                yield self.loss_plot
                yield self.lr_plot
            yield Static(Text("\n").join(summary_line(i, r) for i, r in enumerate(self.runs)), id="runs")
            with TabbedContent(id="tables"):
                for i, run in enumerate(self.runs):
                    _, marker, _ = style_of(i)
                    with TabPane(f"{marker} {run.name}", id=f"run-{i}"):
                        yield EpochTable(id=f"epochs-{i}")
        yield Footer()

    def on_mount(self) -> None:
        self.lr_plot.border_title = "LR (as used)"
        for i, run in enumerate(self.runs):
            self.query_one(f"#epochs-{i}", EpochTable).update_from(run.history)
        self.call_after_refresh(self.redraw)

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw)

    def redraw(self) -> None:
        names = [r.name for r in self.runs]
        which = self.which
        self.loss_plot.border_title = f"{which} loss by epoch"
        self.loss_plot.border_subtitle = "log10" if self.log_scale else ""
        self.loss_plot.set_curves(
            names, loss_overlay(self.runs, which, max(self.loss_plot.size.width, 8)), self.log_scale
        )
        self.lr_plot.set_curves(names, lr_overlay(self.runs, max(self.lr_plot.size.width, 8)))

    def watch_which(self) -> None:
        if self.is_mounted:
            self.redraw()

    def watch_log_scale(self) -> None:
        if self.is_mounted:
            self.redraw()

    def action_toggle_loss(self) -> None:
        self.which = "train" if self.which == "val" else "val"

    def action_log_scale(self) -> None:
        self.log_scale = not self.log_scale


def names_for(paths: list[str], runs: list[Run]) -> list[str]:
    """Each run's recorded name, or the path given for runs whose names repeat."""
    names = [r.name for r in runs]
    return [path if names.count(name) > 1 else name for name, path in zip(names, paths, strict=True)]


def run_compare(loaded: list[tuple[str, list[Event]]], *, mouse: bool = True) -> int:
    runs = [Run.of(path, events) for path, events in loaded]
    for run in runs:
        if run.history.run is not None and run.history.run.run_name:
            run.name = run.history.run.run_name
    for run, name in zip(runs, names_for([p for p, _ in loaded], runs), strict=True):
        run.name = name
    code = CompareApp(runs).run(mouse=mouse)
    return int(code or 0)
