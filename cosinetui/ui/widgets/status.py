"""The status line: run, device, state, epoch and step, LR, throughput, ETA."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from cosinetui.history import History
from cosinetui.ui.format import fmt_duration, fmt_lr, fmt_rate
from cosinetui.ui.series import Axis

STATE_STYLES = {
    "starting": "bold",
    "running": "bold green",
    "paused": "bold yellow",
    "finished": "bold cyan",
    "stopped": "bold cyan",
    "failed": "bold red",
    "stopping": "bold yellow",
}


def eta_seconds(history: History) -> float | None:
    """Time left at the pace of the last few epochs; None when unknown or not running."""
    if history.state not in ("running", "paused") or not history.epochs:
        return None
    recent = [e.seconds for e in history.epochs[-5:] if e.seconds > 0]
    if not recent:
        return None
    per_epoch = sum(recent) / len(recent)
    left = history.total_epochs - history.epochs_done
    spe = history.run.steps_per_epoch if history.run else 0
    if spe and history.batches_in_epoch:
        left -= min(history.batches_in_epoch / spe, 1.0)
    return max(left, 0.0) * per_epoch


def in_progress(history: History) -> int:
    """The epoch being trained (1-based); the last one done once the run is over."""
    if history.state in ("running", "paused", "starting"):
        if history.batches_in_epoch:
            return history.epoch_in_progress
        if history.run is not None and history.epochs_done < history.total_epochs:
            return history.epochs_done + 1
    return history.epochs_done


def current_lr(history: History) -> float | None:
    """The LR in use: the last batch's, unless a schedule change came after it (applied
    while paused, say), whose LR is the one the next batch gets."""
    changes = history.schedule_changes
    if changes and changes[-1].lrs and history.run is not None:
        if changes[-1].step >= Axis.of(history).sched_now(history):
            return changes[-1].lrs[0]
    if history.lrs:
        return history.lrs[-1]
    if history.epochs:
        return history.epochs[-1].lr
    return None


def status_text(history: History, width: int, note: str = "", name: str = "cosinetui") -> Text:
    """The line, dropping the least useful parts first when ``width`` is short.

    While paused, throughput and ETA are left out: neither moves until the run resumes.
    """
    run = history.run
    state = note or history.state
    if history.state == "paused" and history.pause_reason not in ("", "user"):
        state = f"paused ({history.pause_reason})"
    epoch = in_progress(history)
    parts: list[tuple[int, str, str]] = [  # (priority: lower is dropped last, text, style)
        (0, run.run_name if run else name, "bold"),
        (0, state, STATE_STYLES.get(history.state if not note else "stopping", "bold")),
        (0, f"epoch {epoch}/{history.total_epochs}", ""),
        (2, f"step {history.step:,}", ""),
        (1, f"lr {fmt_lr(current_lr(history))}", ""),
        (3, run.device if run else "", "dim"),
    ]
    running = history.state == "running"
    if running and history.epochs and history.epochs[-1].samples_per_s:
        parts.append((4, fmt_rate(history.epochs[-1].samples_per_s), ""))
    eta = eta_seconds(history) if running else None
    if eta is not None:
        parts.append((1, f"ETA {fmt_duration(eta)}", ""))
    parts = [p for p in parts if p[1]]
    sep = " · "
    while len(parts) > 2 and sum(len(t) for _, t, _ in parts) + len(sep) * (len(parts) - 1) > width:
        worst = max(range(len(parts)), key=lambda i: (parts[i][0], i))
        if parts[worst][0] == 0:
            break
        del parts[worst]
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (_, part, style) in enumerate(parts):
        if i:
            text.append(sep, style="dim")
        text.append(part, style=style)
    return text


class StatusLine(Static):
    """One line at the top; redrawn when its text changed.

    Its size comes from the stylesheet (one line, the screen's width), never from the text,
    so an update repaints the line without a layout pass over the screen.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("starting…", id=id)
        self._key: tuple | None = None
        self._text: Text | None = None
        self.placeholder = "cosinetui"  # the name shown until the run has started

    def update_from(self, history: History, note: str = "") -> None:
        key = (history.version, self.size.width, note)
        if key == self._key:
            return
        self._key = key
        if history.run is None and history.end is None and not note:
            note = "starting…"
        text = status_text(history, max(self.size.width, 20), note, self.placeholder)
        if text != self._text:
            self._text = text
            self.update(text, layout=False)
