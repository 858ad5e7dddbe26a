"""The epoch table: one row per finished epoch, best val loss marked, follows the newest row.

It holds the newest MAX_ROWS epochs: Textual's DataTable does work proportional to its row
count on every added row (35 ms a frame at 10,000 rows against 5 ms at 100, measured in
docs/performance.md), and a run that long is read through its plots; `cosinetui diagnose` and
the metrics log keep every epoch.
"""

from __future__ import annotations

import math
from collections import deque

from rich.text import Text
from textual.widgets import DataTable

from cosinetui.events import EpochEnd
from cosinetui.history import History
from cosinetui.ui.format import fmt_duration, fmt_loss, fmt_lr

BEST = " *"
MAX_ROWS = 500


class EpochTable(DataTable):
    """Rows are added incrementally; a resumed run (fewer or replaced epochs) rebuilds them."""

    DEFAULT_CSS = """
    EpochTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", zebra_stripes=True, show_cursor=False)
        self._shown: list[EpochEnd] = []
        self._metrics: list[str] = []
        self._best: int | None = None  # index in _shown of the marked val loss
        self._row_keys: deque = deque()  # the table's rows, oldest first
        self._first = 0  # index in _shown of the table's first row
        self._version = -1

    def on_mount(self) -> None:
        self.add_column(Text("ep", justify="right"), key="epoch")
        self.add_column(Text("train", justify="right"), key="train", width=7)
        self.add_column(Text("val", justify="right"), key="val", width=9)
        self.add_column(Text("lr", justify="right"), key="lr", width=7)
        self.add_column(Text("time", justify="right"), key="time", width=5)

    def update_from(self, history: History) -> None:
        if history.version == self._version:
            return
        self._version = history.version
        epochs = history.epochs
        shown = self._shown
        if len(epochs) < len(shown) or (shown and epochs[len(shown) - 1] is not shown[-1]):
            self.clear()
            shown.clear()
            self._row_keys.clear()
            self._first = 0
            self._best = None
        if len(epochs) == len(shown):
            return
        follow = self.is_vertical_scroll_end or not shown
        new = epochs[len(shown) :]
        for epoch in new:
            for name in epoch.metrics:
                if name not in self._metrics:
                    self._metrics.append(name)
                    label = Text(name, justify="right")
                    self.add_column(label, key=f"m:{name}", width=max(len(name), 6), default="")
        start = len(shown)
        shown.extend(new)
        keep = new[-MAX_ROWS:]
        self._row_keys.extend(self.add_rows([self._cells(e) for e in keep]))
        while len(self._row_keys) > MAX_ROWS:
            self.remove_row(self._row_keys.popleft())
        self._first = len(shown) - len(self._row_keys)
        self._mark_best(self._best_since(start))
        if follow:  # the cursor is hidden; moving it scrolls once the new rows are measured
            self.move_cursor(row=self.row_count - 1, column=0, animate=False, scroll=True)

    def _cells(self, epoch: EpochEnd) -> list[Text | str]:
        cells: list[Text | str] = [
            Text(str(epoch.epoch), justify="right"),
            Text(fmt_loss(epoch.train_loss), justify="right"),
            Text(fmt_loss(epoch.val_loss) + "  ", justify="right"),
            Text(fmt_lr(epoch.lr), justify="right"),
            Text(fmt_duration(epoch.seconds), justify="right"),
        ]
        for name in self._metrics:
            value = epoch.metrics.get(name)
            cells.append(Text("" if value is None else fmt_loss(value), justify="right"))
        return cells

    def _best_since(self, start: int) -> int | None:
        """The row of the lowest val loss (the first one on a tie, as ``History.best_epoch``),
        looking only at rows from ``start`` on: the rows before cannot have changed."""
        best = self._best
        lowest = math.inf if best is None else self._shown[best].val_loss
        for index in range(start, len(self._shown)):
            val = self._shown[index].val_loss
            if val is not None and math.isfinite(val) and val < lowest:  # type: ignore[operator]
                best, lowest = index, val
        return best

    def _mark_best(self, index: int | None) -> None:
        if index == self._best:
            return
        if self._best is not None and self._best >= self._first:  # still in the table
            old = self._shown[self._best]
            self.update_cell_at(
                (self._best - self._first, 2), Text(fmt_loss(old.val_loss) + "  ", justify="right")
            )
        if index is not None and index >= self._first:
            best = self._shown[index]
            label = Text(fmt_loss(best.val_loss), style="bold green", justify="right")
            label.append(BEST, style="bold green")
            self.update_cell_at((index - self._first, 2), label)
        self._best = index

    @property
    def best_row(self) -> int | None:
        return self._best
