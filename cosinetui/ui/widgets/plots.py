"""The loss and LR plots (plotext), rebuilt only when their picture can have changed.

Each plot derives a key from the History: what its picture depends on (epochs done, schedule
changes, the log-scale flag, the width, and the batch step rounded to the batches one braille
dot of the x axis spans). ``show(key, data)`` does nothing when the key is what is already
shown, and a render with the same key, size and theme returns the cached picture instead of
running plotext again. A rebuild (plotext, then its ANSI output turned into strips) costs about
8 ms a plot at 120x40, so new batches that land inside the dot already drawn cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from cosinetui.history import History, Series
from cosinetui.ui import schedule_view
from cosinetui.ui.ansi_strips import AnsiPicture
from cosinetui.ui.format import fmt_tick
from cosinetui.ui.series import (
    Axis,
    Envelope,
    EpochEnvelopes,
    grad_norm_series,
    log10_series,
    log_ticks,
    loss_series,
    nice_ticks,
    padded,
    used_lr_series,
)

TRAIN, VAL, BATCH = "cyan+", "orange+", "gray"
USED, PLANNED, NOW, PREVIEW = "green+", "gray", "yellow+", "magenta+"
END = "red"
GRAD = "cyan+"
LR_TITLE = "LR [green]━[/] used [dim]┄[/] plan [yellow]●[/] now"
GRAD_TITLE = "grad norm [cyan]━[/] before clipping"


class CachedPlot(PlotextPlot):
    """A PlotextPlot that runs plotext only when (data key, size, theme) changed."""

    DEFAULT_CSS = """
    CachedPlot {
        width: 1fr;
        height: 1fr;
        min-height: 4;
    }
    """

    empty_text = "no data yet"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._key: Hashable = None
        self._data: Any = None
        self._cache: tuple[Hashable, Size, str, Text | AnsiPicture] | None = None
        self._history: History | None = None
        self._run: object = None
        self._runs = 0  # RunStarted events seen: a resumed run rewrites the buffers
        self.builds = 0  # plotext builds, for tests and profiling

    def on_resize(self) -> None:
        # New width, new decimation: recompute from the last history rather than stretch.
        if self._history is not None:
            self.update_from(self._history)

    def update_from(self, history: History) -> bool:
        """Recompute the data from ``history`` when it or the width changed; True when the
        picture changed (a rebuild is coming)."""
        self._history = history
        return False

    def invalidate(self) -> None:
        """Forget what is shown: the next ``update_from`` recomputes and rebuilds."""
        self._key = None
        self._cache = None

    def _run_serial(self, history: History) -> int:
        """A number that changes whenever the history starts (or resumes) a run."""
        if history.run is not self._run:
            self._run = history.run
            self._runs += 1
            self.new_run()
        return self._runs

    def new_run(self) -> None:
        """Drop state derived from the previous run's buffers."""

    def show(self, key: Hashable, data: Any) -> bool:
        """Plot ``data`` unless ``key`` is what is already shown; True when it was not."""
        if key == self._key:
            return False
        self._key, self._data = key, data
        self.refresh()
        return True

    def render(self) -> Text | AnsiPicture:
        theme = self._get_plotext_theme_name(self.app.theme)
        cache = self._cache
        if cache and cache[0] == self._key and cache[1] == self.size and cache[2] == theme:
            return cache[3]
        width, height = self.size
        if self._data is None or width < 8 or height < 3:
            text = Text(self.empty_text, style="dim", justify="center")
        else:
            plt = self.plt
            plt.clear_figure()
            plt.plotsize(width, height)
            plt._set_size(width, height)
            plt.theme(theme)
            if self.draw(plt, self._data, width, height) is False:
                text = Text(self.empty_text, style="dim", justify="center")
            else:
                text = AnsiPicture(plt.build())
                self.builds += 1
        self._cache = (self._key, self.size, theme, text)
        return text

    def draw(self, plt: Plot, data: Any, width: int, height: int) -> bool | None:
        """Fill the figure; return False when there is nothing to plot."""
        raise NotImplementedError


def _set_axes(
    plt: Plot,
    xs: list[float],
    ys: list[float],
    height: int,
    width: int,
    *,
    log: bool = False,
    x_hi: float | None = None,
) -> None:
    x_lo, x_top = min(xs), max(xs)
    if x_hi is not None:
        x_top = max(x_top, x_hi)
    y_lo, y_hi = padded(min(ys), max(ys))
    plt.ylim(y_lo, y_hi)
    plt.xlim(*padded(x_lo, x_top, 0.0) if x_top > x_lo else padded(x_lo, x_top))
    yticks = (
        log_ticks(y_lo, y_hi, max(2, height // 3))
        if log
        else nice_ticks(y_lo, y_hi, max(2, height // 3))
    )
    plt.yticks(yticks, [fmt_tick(10**t if log else t) for t in yticks])
    xticks = nice_ticks(x_lo, x_top, max(2, width // 8), integer=x_top - x_lo >= 2)
    plt.xticks(xticks, [fmt_tick(t) for t in xticks])


class LossPlot(CachedPlot):
    """Train and val loss per epoch, and the smoothed batch loss of the epoch in progress."""

    empty_text = "loss: waiting for the first batches"
    log_scale: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._envelopes = EpochEnvelopes()

    def new_run(self) -> None:
        self._envelopes.reset()  # the epoch buffers were cut back to the checkpoint

    def update_from(self, history: History) -> bool:
        self._history = history
        buckets = self.size.width
        if not buckets:
            return False
        # The x axis runs from epoch 1 to the newest batch; a dot spans at least this many
        # batches (the y labels take part of the width, so the real dot is wider).
        span = history.step - (history.run.steps_per_epoch if history.run else 0)
        quantum = dot_quantum(span, buckets)
        last = history.epochs[-1] if history.epochs else None
        key = (
            self._run_serial(history),
            history.epochs_done,
            last,  # a replayed epoch replaces the last record
            history.step // quantum,
            quantum,
            self.log_scale,
            buckets,
        )
        return key != self._key and self.show(key, loss_series(history, buckets, self._envelopes))

    def watch_log_scale(self) -> None:
        self.border_subtitle = "log10" if self.log_scale else ""
        if self._history is not None:
            self.update_from(self._history)

    def draw(self, plt: Plot, data: Any, width: int, height: int) -> bool | None:
        parts = [(data.train, TRAIN), (data.val, VAL), (data.batch, BATCH)]
        if self.log_scale:
            parts = [(log10_series(s), c) for s, c in parts]
        parts = [(s, c) for s, c in parts if s.xs]
        if not parts:
            return False
        xs = [x for s, _ in parts for x in s.xs]
        ys = [y for s, _ in parts for y in s.ys]
        for series, color in parts:
            if len(series.xs) == 1:
                plt.scatter(series.xs, series.ys, marker="●", color=color)
            else:
                plt.plot(series.xs, series.ys, marker="braille", color=color)
        _set_axes(plt, xs, ys, height, width, log=self.log_scale)
        return None


class LRPlot(CachedPlot):
    """The LR used so far (solid), the plan from now to the end (dotted), a marker at now.

    With ``grad_norm`` set it shows the gradient norm per optimizer step instead (the runs
    with ``max_grad_norm`` record it): the panel is shared, as both follow the batches.
    """

    empty_text = "LR: waiting for the run to start"
    grad_norm: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._envelope = Envelope()
        self._grad_envelope = Envelope()

    def new_run(self) -> None:
        self._envelope.reset()  # the LR buffer was rewritten from the checkpoint on
        self._grad_envelope.reset()

    def watch_grad_norm(self) -> None:
        self.border_title = GRAD_TITLE if self.grad_norm else LR_TITLE
        self.empty_text = (
            "grad norm: none recorded (set max_grad_norm)" if self.grad_norm else type(self).empty_text
        )
        if self._history is not None:
            self.update_from(self._history)

    def update_from(self, history: History) -> bool:
        self._history = history
        buckets = self.size.width
        if not buckets:
            return False
        if self.grad_norm:
            n = len(history.scalar("grad_norm"))
            key = ("grad_norm", self._run_serial(history), n // dot_quantum(n, buckets), buckets)
            return key != self._key and self.show(key, grad_norm_series(history, self._grad_envelope, buckets))
        # The x axis spans at least the planned run, so a dot is at least that many scheduler
        # steps (and batches) wide. With a per-epoch schedule the LR is constant within an
        # epoch: only the end of the used line moves, and only a dot at a time.
        axis = Axis.of(history)
        if axis.steps_per_epoch:
            batches = history.step // dot_quantum(axis.epochs * axis.steps_per_epoch, buckets)
        elif axis.interval == "epoch":
            batches = 0  # the used line comes from the epoch records: batches do not show
        else:  # an axis in batches, at least as long as what was trained
            batches = history.step // dot_quantum(history.step, buckets)
        now = axis.sched_now(history)
        key = (
            self._run_serial(history),
            len(history.schedule_changes),
            now // dot_quantum(max(axis.sched_end, now), buckets),
            batches,
            buckets,
        )
        return key != self._key and self.show(key, lr_plot_data(history, self._envelope, buckets))

    def draw(self, plt: Plot, data: Any, width: int, height: int) -> bool | None:
        if isinstance(data, Series):  # the gradient norm
            if not data.xs:
                return False
            plt.plot(data.xs, data.ys, marker="braille", color=GRAD)
            _set_axes(plt, data.xs, data.ys, height, width)
            return None
        used, planned, now, end = data
        if not used.xs and not planned.xs:
            return False
        xs = used.xs + planned.xs
        ys = used.ys + planned.ys
        if used.xs:
            plt.plot(used.xs, used.ys, marker="braille", color=USED)
        if planned.xs:
            plt.plot(planned.xs, planned.ys, marker="dot", color=PLANNED)
        if end is not None:
            plt.vertical_line(end, color=END)
        if now is not None:
            plt.scatter([now[0]], [now[1]], marker="●", color=NOW)
        _set_axes(plt, xs, ys, height, width)
        return None


def dot_quantum(span: int, width: int) -> int:
    """A power of two no larger than the steps one braille dot (half a column) spans when
    ``span`` steps fill ``width`` columns; at least 1. A power of two keeps ``step // quantum``
    steady while the span grows, so it changes once per dot, not on every batch."""
    per_dot = span // (2 * width) if width > 0 else 0
    return 1 << max(per_dot.bit_length() - 1, 0)


def lr_plot_data(history: History, envelope: Envelope, buckets: int) -> tuple:
    """(used, planned, (x, lr) now or None, x of the run's end when the plan runs past it)."""
    axis = Axis.of(history)
    used = used_lr_series(history, envelope, buckets)
    planned = Series([], [])
    now = None
    end = None
    schedule = schedule_view.load(history)
    if schedule is not None:
        start = schedule.step
        stop = schedule_view.horizon(schedule, axis)
        steps, lrs = schedule_view.planned(schedule, start, stop, 2 * buckets)
        planned = Series([axis.sched_x(s) for s in steps], lrs)
        now = (axis.sched_x(start), schedule.lr_at(start)[0])
        if stop > axis.sched_end > 0:
            end = axis.sched_x(axis.sched_end)
    if now is None and used.xs:
        now = (used.xs[-1], used.ys[-1])
    return used, planned, now, end


def preview_data(history: History, current: Any, new: Any, buckets: int) -> tuple | None:
    """The adjust form's preview: (current plan, new plan, x now, x run end) from now on."""
    if current is None:
        return None
    axis = Axis.of(history)
    start = current.step
    stop = schedule_view.horizon(current, axis)
    if new is not None:
        stop = max(stop, schedule_view.horizon(new, axis))
    old_steps, old_lrs = schedule_view.planned(current, start, stop, 2 * buckets)
    old = Series([axis.sched_x(s) for s in old_steps], old_lrs)
    fresh = Series([], [])
    if new is not None:
        steps, lrs = schedule_view.planned(new, start, stop, 2 * buckets)
        fresh = Series([axis.sched_x(s) for s in steps], lrs)
    end = axis.sched_x(axis.sched_end) if stop > axis.sched_end > 0 else None
    return old, fresh, axis.sched_x(start), end


class PreviewPlot(CachedPlot):
    """The schedule form's preview: the current plan (dotted) against the new one."""

    empty_text = "no preview: fix the fields"

    def draw(self, plt: Plot, data: Any, width: int, height: int) -> bool | None:
        old, new, now, end = data
        if not old.xs:
            return False
        plt.plot(old.xs, old.ys, marker="dot", color=PLANNED)
        if new.xs:
            plt.plot(new.xs, new.ys, marker="braille", color=PREVIEW)
        if end is not None:
            plt.vertical_line(end, color=END)
        xs, ys = old.xs + new.xs, old.ys + new.ys
        if not math.isfinite(sum(ys)):
            return False
        _set_axes(plt, xs, ys, height, width)
        return None
