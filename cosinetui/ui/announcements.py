"""Which toasts a History calls for: pure, so it is tested without Textual.

Acknowledgements (a schedule change, a refused command, a checkpoint asked for) and a failure,
each announced once. What was already there when the dashboard opened (an attach replays the
run from its log) is marked as seen, not announced as news.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cosinetui.history import History


@dataclass(frozen=True)
class Toast:
    message: str
    title: str
    severity: str = "information"
    timeout: float = 5.0


class Announcer:
    def __init__(self) -> None:
        self._refusals = 0
        self._changes = 0
        self._checkpoint: Any = None
        self._end: Any = None

    def mark_seen(self, history: History) -> None:
        """Take what ``history`` holds now as already announced."""
        self._refusals = len(history.refusals)
        self._changes = len(history.schedule_changes)
        self._checkpoint = history.last_checkpoint
        self._end = history.end

    def news(self, history: History) -> list[Toast]:
        """The toasts for what happened since the last call (or ``mark_seen``)."""
        toasts = []
        end = history.end
        if end is not None and end is not self._end:
            self._end = end
            if history.state == "failed":
                toasts.append(Toast(getattr(end, "error", ""), "the run failed", "error", 30))
        for refusal in history.refusals[self._refusals :]:
            what = refusal.command.get("op") or refusal.command.get("type", "command")
            toasts.append(Toast(refusal.reason, f"{what} refused", "error", 8))
        self._refusals = len(history.refusals)
        for change in history.schedule_changes[self._changes :]:
            toasts.append(Toast(f"{change.op} at step {change.step}", "schedule changed"))
        self._changes = len(history.schedule_changes)
        checkpoint = history.last_checkpoint
        if checkpoint is not None and checkpoint is not self._checkpoint:
            self._checkpoint = checkpoint
            if checkpoint.reason == "user":
                toasts.append(Toast(f"epoch {checkpoint.epoch}: {checkpoint.path}", "checkpoint saved"))
        return toasts
