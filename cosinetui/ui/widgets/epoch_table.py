"""The epoch table: one row per finished epoch, best val loss marked, follows the newest row.

A Line API widget (Textual's ScrollView) rather than a DataTable: DataTable renders every
visible cell again through rich whenever a row is added (its cell cache is keyed on a
counter each change bumps), about 15 ms of a 120x40 frame at every epoch end, against the
dashboard's 30 ms frame budget (docs/performance.md). Here a row is formatted once, when its
epoch arrives, and a frame renders only the lines on screen from those strings, so the table
can hold every epoch of the run at the same cost as a few.
"""

from __future__ import annotations

import math

from rich.segment import Segment
from rich.style import Style
from textual.actions import SkipAction
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from cosinetui.events import EpochEnd
from cosinetui.history import History, epoch_metrics
from cosinetui.ui.format import fmt_duration, fmt_loss, fmt_lr

BEST = " *"  # after the best val loss; other val cells keep two blanks so columns line up
COLUMNS = ("ep", "train", "val", "lr", "time")
VAL = COLUMNS.index("val")


class EpochTable(ScrollView, can_focus=True):
    """Rows are added incrementally; a resumed run (fewer or replaced epochs) rebuilds them."""

    COMPONENT_CLASSES = {"epoch-table--header", "epoch-table--stripe", "epoch-table--best"}

    DEFAULT_CSS = """
    EpochTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        & > .epoch-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .epoch-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .epoch-table--stripe { background: $surface-lighten-1 50%; }
        & > .epoch-table--best { text-style: bold; color: $success; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: list[EpochEnd] = []  # the History's epoch records, in order
        self._cells: list[tuple[str, ...]] = []  # each row's text, formatted once
        self._metrics: list[str] = []  # extra columns, in order of first appearance
        self._widths: list[int] = [len(name) for name in COLUMNS]
        self._best: int | None = None  # row of the marked val loss
        self._version = -1
        self._follow = True  # keep the newest row in view (the reader has not scrolled up)
        self._saved = ""  # the best.pt note of the border

    # -- data ---------------------------------------------------------------------------

    def update_from(self, history: History) -> None:
        if history.version == self._version:
            return
        self._version = history.version
        # Where the marked epoch's weights are: best.pt, next to checkpoint.pt.
        saved = history.best_weights
        self._saved = f"{BEST.strip()} best.pt: epoch {saved.epoch}" if saved is not None else ""
        self._update_subtitle()
        epochs = history.epochs
        shown = self._shown
        cleared = len(epochs) < len(shown) or (shown and epochs[len(shown) - 1] is not shown[-1])
        if cleared:
            self._clear()
        elif len(epochs) == len(shown):
            return
        start = len(shown)
        new = epochs[start:]
        for epoch in new:
            for name in epoch_metrics(epoch):
                if name not in self._metrics:
                    self._metrics.append(name)
                    self._widths.append(max(len(name), 4))
        shown.extend(new)
        for epoch in new:
            cells = self._format(epoch)
            self._cells.append(cells)
            self._widths = [max(w, len(c)) for w, c in zip(self._widths, cells, strict=False)]
        self._best = self._best_since(start)
        self._resize_rows(Size(self._row_width(), len(shown) + 1))  # + the header
        self._update_subtitle()
        self.refresh()
        if self._follow:
            self._scroll_to_newest()

    def _resize_rows(self, size: Size) -> None:
        # A new virtual size normally asks for a layout pass, which composes the whole
        # screen again (about 5 ms at 120x40). Once the vertical scrollbar shows, more rows
        # change nothing in the layout: only the scrollbar's proportions.
        old = self.virtual_size
        if size.width != old.width or size.height < old.height or not self.show_vertical_scrollbar:
            self.virtual_size = size
            return
        self.set_reactive(EpochTable.virtual_size, size)
        self.vertical_scrollbar.window_virtual_size = size.height

    def _scroll_to_newest(self) -> None:
        # At once when laid out (no frame drawn at the old offset); before that, on_resize
        # does it. Forced: the scrollbars that allow scrolling appear only with the next layout.
        if self.size.height:
            self.scroll_end(animate=False, immediate=True, force=True, x_axis=False)

    def on_resize(self) -> None:
        if self._follow:
            self._scroll_to_newest()
        self._update_subtitle()

    def watch_scroll_x(self, old: float, new: float) -> None:
        super().watch_scroll_x(old, new)
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        """best.pt's epoch, and how many columns lie right of the view (a narrow terminal:
        the table scrolls sideways with the arrow keys once focused)."""
        right, hidden = 0, 0
        edge = self.scroll_x + self.scrollable_content_region.width
        for width in self._widths:
            right += width + 2
            hidden += right > edge
        parts = [self._saved] if self._saved else []
        if hidden and self.size.width:
            parts.append(f"→ {hidden} more column{'s' if hidden > 1 else ''}")
        subtitle = " · ".join(parts)
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # Follow the newest row until the reader scrolls up; again once they scroll (or
        # jump with End) to the bottom, even if a row arrives while that scroll animates.
        if new < old:
            self._follow = False
        if self.scroll_target_y >= self.max_scroll_y:
            self._follow = True

    def action_page_up(self) -> None:
        self._page(-1)

    def action_page_down(self) -> None:
        self._page(1)

    def _page(self, direction: int) -> None:
        # The header takes a line of the view: a page is a row less, so that none is skipped.
        if not self.allow_vertical_scroll:
            raise SkipAction()
        rows = max(self.scrollable_content_region.height - 1, 1)
        self.scroll_to(y=self.scroll_target_y + direction * rows)

    def _clear(self) -> None:
        self._follow = True
        self._shown.clear()
        self._cells.clear()
        self._metrics.clear()
        self._widths = [len(name) for name in COLUMNS]
        self._best = None

    def _format(self, epoch: EpochEnd) -> tuple[str, ...]:
        cells = [
            str(epoch.epoch),
            fmt_loss(epoch.train_loss),
            fmt_loss(epoch.val_loss) + " " * len(BEST),
            fmt_lr(epoch.lr),
            fmt_duration(epoch.seconds),
        ]
        metrics = epoch_metrics(epoch)
        for name in self._metrics:
            value = metrics.get(name)
            cells.append("" if value is None else fmt_loss(value))
        return tuple(cells)

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

    # -- what tests and the app read ------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._shown)

    @property
    def best_row(self) -> int | None:
        return self._best

    @property
    def columns(self) -> list[str]:
        return [*COLUMNS, *self._metrics]

    def cell(self, row: int, column: int) -> str:
        """The text shown in a cell (the best val loss with its marker)."""
        cells = self._cells[row]
        text = cells[column] if column < len(cells) else ""
        if row == self._best and column == VAL:
            text = fmt_loss(self._shown[row].val_loss) + BEST
        return text

    # -- drawing ----------------------------------------------------------------------------

    def _row_width(self) -> int:
        return sum(width + 2 for width in self._widths)  # one blank each side of a cell

    def _segments(self, texts: list[str], style: Style, best: Style | None = None) -> list[Segment]:
        widths = self._widths
        line = [Segment(" " + t.rjust(w) + " ", style) for t, w in zip(texts, widths, strict=True)]
        if best is not None:
            line[VAL] = Segment(" " + texts[VAL].rjust(widths[VAL]) + " ", style + best)
        return line

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = base + self.get_component_rich_style("epoch-table--header")
            names = self.columns
            names[VAL] += " " * len(BEST)  # over the numbers, not over their marker's room
            segments = self._segments(names, header)
            return Strip(segments).crop_extend(scroll_x, scroll_x + width, header)
        row = y - 1 + scroll_y
        if row >= len(self._cells):
            return Strip.blank(width, base)
        style = base
        if row % 2:
            style = base + self.get_component_rich_style("epoch-table--stripe")
        texts = [self.cell(row, column) for column in range(len(self._widths))]
        best = self.get_component_rich_style("epoch-table--best") if row == self._best else None
        return Strip(self._segments(texts, style, best)).crop_extend(scroll_x, scroll_x + width, style)
