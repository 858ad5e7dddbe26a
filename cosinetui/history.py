"""The in-memory history of a run, rebuilt from its events, and decimation for plots.

The same ``History`` is fed by a live trainer's events, by an attached client, and by a
replayed metrics log, so all three see identical data. Batch losses and LRs live in flat
``array('d')`` buffers (16 bytes a batch) indexed by global step.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cosinetui.events import (
    Alert,
    BatchChunk,
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


class History:
    """Everything known about a run, updated one event at a time."""

    def __init__(self) -> None:
        self.run: RunStarted | None = None
        self.state = "starting"  # running, paused, finished, stopped, failed
        self.epochs: list[EpochEnd] = []
        # The epochs' train and val losses again, flat (NaN where there is no val loss), so
        # that plots can summarise them incrementally instead of walking the records.
        self.train_losses = array("d")
        self.val_losses = array("d")
        self.losses = array("d")  # per global batch step
        self.lrs = array("d")
        # Per-batch scalars by name (``grad_norm``, values a loop logs), indexed by global step
        # like ``losses``; NaN where a batch did not record the name. An array may be shorter
        # than ``losses`` when the latest batches did not record it.
        self.scalars: dict[str, array] = {}
        self.epoch_in_progress = 0  # 1-based epoch of the latest batches
        self.batches_in_epoch = 0
        self.schedule: dict | None = None  # latest scheduler JSON state
        self.schedule_changes: list[ScheduleChanged] = []
        self.alerts: dict[str, Alert] = {}  # by episode key; insertion order = first raised
        self.refusals: list[CommandRefused] = []
        self.last_checkpoint: CheckpointWritten | None = None
        self.best_weights: CheckpointWritten | None = None  # the latest best.pt written
        self.pause_reason = ""
        self.end: Finished | Failed | None = None
        # Bumped on every change; widgets compare it to skip redundant redraws.
        self.version = 0

    # ------------------------------------------------------------------ feeding

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> History:
        history = cls()
        history.extend(events)
        return history

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        self.version += 1
        if isinstance(event, BatchChunk):
            self._add_batches(event)
        elif isinstance(event, EpochEnd):
            self._add_epoch(event)
        elif isinstance(event, RunStarted):
            self.run = event
            # Empty when the loop's scheduler is not an AdjustableCosineLR (track()): no plan.
            self.schedule = event.schedule or None
            self.state = "running"
            self.end = None
            # A resumed run restarts from its checkpoint: drop what came after it.
            self._truncate(event.start_epoch, event.global_step)
        elif isinstance(event, ScheduleChanged):
            self.schedule = event.schedule
            self.schedule_changes.append(event)
        elif isinstance(event, Alert):
            key = event.key or f"{event.kind}:{event.epoch}:{event.step}"
            self.alerts[key] = event
        elif isinstance(event, Paused):
            self.state = "paused"
            self.pause_reason = event.reason
        elif isinstance(event, Resumed):
            self.state = "running"
            self.pause_reason = ""
        elif isinstance(event, CheckpointWritten):
            if event.reason == "best":
                self.best_weights = event
            else:
                self.last_checkpoint = event
        elif isinstance(event, CommandRefused):
            self.refusals.append(event)
        elif isinstance(event, Finished):
            self.state = "finished" if event.reason == "completed" else "stopped"
            self.end = event
        elif isinstance(event, Failed):
            self.state = "failed"
            self.end = event

    def _truncate(self, epochs: int, steps: int) -> None:
        self._cut_epochs(epochs)
        if self.best_weights is not None and self.best_weights.epoch > epochs:
            self.best_weights = None  # from an epoch trained again
        del self.losses[steps:]
        del self.lrs[steps:]
        for values in self.scalars.values():
            del values[steps:]
        self.schedule_changes = [c for c in self.schedule_changes if c.step <= self._sched_step(steps)]

    def _sched_step(self, global_step: int) -> int:
        if self.run is not None and self.run.interval == "epoch" and self.run.steps_per_epoch:
            return global_step // self.run.steps_per_epoch
        return global_step

    def _add_batches(self, chunk: BatchChunk) -> None:
        start = chunk.first_step
        if start < len(self.losses):  # replayed after a resume: newer data wins
            del self.losses[start:]
            del self.lrs[start:]
        gap = start - len(self.losses)
        if gap > 0:
            self.losses.extend([math.nan] * gap)
            self.lrs.extend([math.nan] * gap)
        self.losses.extend(chunk.losses)
        self.lrs.extend(chunk.lrs)
        for name, values in chunk.scalars.items():
            series = self.scalars.setdefault(name, array("d"))
            del series[start:]
            series.extend([math.nan] * (start - len(series)))
            series.extend(values)
        self.epoch_in_progress = chunk.epoch
        self.batches_in_epoch = chunk.batches_in_epoch

    def _cut_epochs(self, keep: int) -> None:
        del self.epochs[keep:]
        del self.train_losses[keep:]
        del self.val_losses[keep:]

    def _add_epoch(self, epoch: EpochEnd) -> None:
        self._cut_epochs(epoch.epoch - 1)
        self.epochs.append(epoch)
        self.train_losses.append(epoch.train_loss)
        self.val_losses.append(math.nan if epoch.val_loss is None else epoch.val_loss)
        self.epoch_in_progress = epoch.epoch
        self.batches_in_epoch = 0

    # ------------------------------------------------------------------ reading

    @property
    def step(self) -> int:
        """Global batches trained so far."""
        return len(self.losses)

    @property
    def epochs_done(self) -> int:
        return len(self.epochs)

    @property
    def total_epochs(self) -> int:
        return self.run.epochs if self.run else 0

    @property
    def best_epoch(self) -> EpochEnd | None:
        scored = [e for e in self.epochs if e.val_loss is not None and math.isfinite(e.val_loss)]
        return min(scored, key=lambda e: e.val_loss) if scored else None  # type: ignore[arg-type,return-value]

    def scalar(self, name: str) -> Sequence[float]:
        """The per-batch values of scalar ``name`` (e.g. ``grad_norm``); empty if never recorded."""
        return self.scalars.get(name, ())

    def current_epoch_losses(self) -> Sequence[float]:
        """Batch losses of the epoch in progress (empty right after an epoch ends)."""
        if self.batches_in_epoch == 0:
            return ()
        return self.losses[len(self.losses) - self.batches_in_epoch :]

    def active_alerts(self) -> list[Alert]:
        """Alerts, newest first."""
        return list(reversed(self.alerts.values()))


def epoch_metrics(epoch: EpochEnd) -> dict[str, float]:
    """An epoch's validation metrics, then its train-side scalars' means, by the names the
    epoch table and headless lines show: a train-side name that a validation metric also
    uses is shown as ``train_<name>``."""
    if not epoch.train_metrics:
        return epoch.metrics
    out = dict(epoch.metrics)
    for name, value in epoch.train_metrics.items():
        out[f"train_{name}" if name in epoch.metrics else name] = value
    return out


@dataclass(frozen=True)
class Series:
    xs: list[float]
    ys: list[float]


def decimate(ys: Sequence[float], buckets: int, x0: int = 0) -> Series:
    """At most ~2*buckets points that keep each bucket's min and max, in x order.

    A spike survives decimation (a mean would hide it); NaNs are dropped. Points are
    (x0 + index, value).
    """
    n = len(ys)
    if n <= 2 * buckets or buckets <= 0:
        xs, out = [], []
        for i, y in enumerate(ys):
            if y == y and not math.isinf(y):
                xs.append(float(x0 + i))
                out.append(float(y))
        return Series(xs, out)
    xs, out = [], []
    size = n / buckets
    for b in range(buckets):
        lo, hi = int(b * size), int((b + 1) * size)
        window = [(y, i) for i, y in enumerate(ys[lo:hi], lo) if y == y and not math.isinf(y)]
        if not window:
            continue
        ymin, imin = min(window)
        ymax, imax = max(window)
        for i, y in sorted({(imin, ymin), (imax, ymax)}):
            xs.append(float(x0 + i))
            out.append(float(y))
    return Series(xs, out)


class Ema:
    """Debiased exponential moving average, as TensorBoard smooths a curve."""

    def __init__(self, alpha: float) -> None:
        self.alpha, self.avg, self.weight = alpha, 0.0, 0.0

    def add(self, value: float) -> float:
        self.avg = (1 - self.alpha) * self.avg + self.alpha * value
        self.weight = (1 - self.alpha) * self.weight + self.alpha
        return self.avg / self.weight


def ema(values: Sequence[float], alpha: float = 0.1) -> list[float]:
    """The debiased EMA of ``values`` at each point; NaNs and infinities are skipped."""
    smoother = Ema(alpha)
    out: list[float] = []
    last = math.nan
    for v in values:
        if v == v and not math.isinf(v):
            last = smoother.add(v)
        out.append(last)
    return out
