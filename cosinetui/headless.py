"""Headless output: one line per epoch, plus alerts and command results.

Used with --headless and whenever stdout is not a terminal, so nohup and Slurm logs stay
readable: no progress bars, no escape codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cosinetui.events import (
    Alert,
    CheckpointWritten,
    CommandRefused,
    EpochEnd,
    Event,
    Failed,
    Finished,
    Paused,
    Resumed,
    RunStarted,
    ScheduleChanged,
)
from cosinetui.history import epoch_metrics


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "nan"
    return f"{x:.4f}" if abs(x) >= 1e-3 else f"{x:.3e}"


def format_event(event: Event) -> str | None:
    """The line printed for an event, or None for events that stay silent (batch chunks)."""
    if isinstance(event, RunStarted):
        what = "resumed" if event.start_epoch or event.global_step else "started"
        return (
            f"run {event.run_name} {what}: {event.epochs} epochs on {event.device}, "
            f"{event.param_count:,} parameters, torch {event.torch_version}; dir {event.run_dir}"
        )
    if isinstance(event, EpochEnd):
        extra = "".join(f" {k} {_num(v)}" for k, v in epoch_metrics(event).items())
        return (
            f"epoch {event.epoch:>4}  train {_num(event.train_loss)}  val {_num(event.val_loss)}"
            f"  lr {event.lr:.3e}  {event.seconds:.1f}s  {event.samples_per_s:,.0f}/s{extra}"
        )
    if isinstance(event, Alert):
        tail = f" -> {event.suggestion}" if event.suggestion else ""
        return f"{event.severity.upper()} {event.kind} (epoch {event.epoch}): {event.message}{tail}"
    if isinstance(event, ScheduleChanged):
        args = ", ".join(f"{k}={v}" for k, v in event.args.items())
        return f"schedule: {event.op}({args}) at step {event.step}; lr now {_num(event.lrs[0] if event.lrs else None)}"
    if isinstance(event, CommandRefused):
        return f"refused {event.command.get('type')}: {event.reason}"
    if isinstance(event, Paused):
        return f"paused at step {event.step} ({event.reason})"
    if isinstance(event, Resumed):
        return f"resumed at step {event.step}"
    if isinstance(event, CheckpointWritten):
        # best.pt follows the val loss: the epoch lines already say when it improves.
        return None if event.reason in ("epoch", "best") else f"checkpoint ({event.reason}): {event.path}"
    if isinstance(event, Finished):
        best = f"; best val {_num(event.best_val_loss)}" if event.best_val_loss is not None else ""
        return f"finished ({event.reason}) after {event.epoch} epochs, {event.step} steps{best}"
    if isinstance(event, Failed):
        tail = f"\n{event.traceback}" if event.traceback else ""  # none for a write error
        return f"FAILED at epoch {event.epoch + 1}, step {event.step}: {event.error}{tail}"
    return None


class Printer:
    """Writes the lines for a stream of events. An alert episode is printed when it starts and
    when its severity changes, not at every update, so logs stay short."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self._alert_severity: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Alert):
            if self._alert_severity.get(event.key) == event.severity:
                return
            self._alert_severity[event.key] = event.severity
        line = format_event(event)
        if line:
            self.write(line)
