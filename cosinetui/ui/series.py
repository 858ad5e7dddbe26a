"""Plot data from a History: decimated, in epoch units, cheap to recompute at 10 Hz.

Everything here is plain Python (no textual), so it is tested directly. The expensive
input is the per-batch LR buffer (a million floats on a long run): ``Envelope`` keeps a
min/max summary of it per block of batches, updated only for the batches that arrived
since the last call, so a redraw never walks the whole buffer.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cosinetui.history import History, Series, decimate, ema


@dataclass(frozen=True)
class Axis:
    """How scheduler steps and global batches map to the plots' x axis (epochs)."""

    interval: str  # "epoch" or "batch": what one scheduler step is
    steps_per_epoch: int  # batches per epoch, 0 when unknown
    epochs: int  # planned epochs of the run

    @classmethod
    def of(cls, history: History) -> Axis:
        run = history.run
        if run is None:
            return cls("epoch", 0, 0)
        return cls(run.interval, run.steps_per_epoch, run.epochs)

    @property
    def in_epochs(self) -> bool:
        """False only when batches cannot be converted (batch interval, unknown epoch length)."""
        return self.interval == "epoch" or self.steps_per_epoch > 0

    def batch_x(self, batch: float) -> float:
        return batch / self.steps_per_epoch if self.steps_per_epoch else batch

    def sched_x(self, step: float) -> float:
        if self.interval == "epoch":
            return step
        return self.batch_x(step)

    def sched_now(self, history: History) -> int:
        """The scheduler step the trainer is at, from what has been trained."""
        if self.interval == "epoch":
            return history.epochs_done
        return history.step

    @property
    def sched_end(self) -> int:
        """The scheduler step at the end of the run as planned."""
        if self.interval == "epoch":
            return self.epochs
        return self.epochs * self.steps_per_epoch


class Envelope:
    """A min/max summary per block of a growing float buffer, for O(width) decimation.

    ``update`` must see the same buffer each time; it only reads what was appended since
    the previous call (and the last block it read before, so a replaced last value counts).
    ``reset`` after the buffer was cut.
    """

    def __init__(self, block: int = 64) -> None:
        self.block = block
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self._mins = array("d")
        self._maxs = array("d")
        self._imins = array("q")
        self._imaxs = array("q")

    def update(self, values: Sequence[float]) -> None:
        n = len(values)
        if n < self.n:
            self.reset()
        block = self.block
        first = max(self.n - 1, 0) // block  # the last block read may have changed since
        for buf in (self._mins, self._maxs, self._imins, self._imaxs):
            del buf[first:]
        for b in range(first, -(-n // block)):
            lo = b * block
            chunk = values[lo : lo + block]
            ymin, ymax = min(chunk), max(chunk)
            if not (math.isfinite(ymin) and math.isfinite(ymax)):
                finite = [v for v in chunk if math.isfinite(v)]
                if not finite:
                    ymin = ymax = math.nan
                else:
                    ymin, ymax = min(finite), max(finite)
            if ymin == ymin:
                imin, imax = lo + chunk.index(ymin), lo + chunk.index(ymax)
            else:
                imin = imax = lo
            self._mins.append(ymin)
            self._maxs.append(ymax)
            self._imins.append(imin)
            self._imaxs.append(imax)
        self.n = n

    def series(self, values: Sequence[float], buckets: int) -> Series:
        """Like ``decimate(values, buckets)`` (x = index), in time independent of len(values)."""
        nblocks = len(self._mins)
        if nblocks <= 2 * buckets:
            return decimate(values[: self.n], buckets)
        xs: list[float] = []
        ys: list[float] = []
        size = nblocks / buckets
        for b in range(buckets):
            lo, hi = int(b * size), int((b + 1) * size)
            mins = [m for m in self._mins[lo:hi] if m == m]
            if not mins:
                continue
            ymin = min(mins)
            ymax = max(m for m in self._maxs[lo:hi] if m == m)
            imin = self._imins[lo + list(self._mins[lo:hi]).index(ymin)]
            imax = self._imaxs[lo + list(self._maxs[lo:hi]).index(ymax)]
            for i, y in sorted({(imin, ymin), (imax, ymax)}):
                xs.append(float(i))
                ys.append(y)
        return Series(xs, ys)


def scale_x(series: Series, fn: Callable[[float], float]) -> Series:
    return Series([fn(x) for x in series.xs], series.ys)


def log10_series(series: Series) -> Series:
    """Keep positive values as log10 (plotext's own log axis crashes on a redraw)."""
    xs, ys = [], []
    for x, y in zip(series.xs, series.ys, strict=True):
        if y > 0:
            xs.append(x)
            ys.append(math.log10(y))
    return Series(xs, ys)


@dataclass(frozen=True)
class LossSeries:
    train: Series
    val: Series
    batch: Series  # smoothed batch loss of the epoch in progress


class EpochEnvelopes:
    """Envelopes of a History's per-epoch train and val losses, for ``loss_series``."""

    BLOCK = 8  # epochs: a long run's series costs O(epochs / 8), a short one's O(epochs)

    def __init__(self) -> None:
        self.train = Envelope(self.BLOCK)
        self.val = Envelope(self.BLOCK)

    def reset(self) -> None:
        self.train.reset()
        self.val.reset()


def loss_series(
    history: History, buckets: int, envelopes: EpochEnvelopes | None = None, *, alpha: float = 0.1
) -> LossSeries:
    """Per-epoch train/val loss at x = epoch (1-based) and the running epoch's smoothed batches.

    With ``envelopes`` (kept by the caller across calls on the same run, reset when the run
    is replaced) the epoch curves cost time independent of the number of epochs."""
    if envelopes is None:
        train = decimate(history.train_losses, buckets, x0=1)
        val = decimate(history.val_losses, buckets, x0=1)
    else:
        series = []
        for env, values in ((envelopes.train, history.train_losses), (envelopes.val, history.val_losses)):
            env.update(values)
            series.append(scale_x(env.series(values, buckets), lambda i: i + 1))
        train, val = series
    current = history.current_epoch_losses()
    batch = Series([], [])
    if current:
        axis = Axis.of(history)
        smooth = decimate(ema(current, alpha), buckets)
        done = history.step - len(current)
        batch = scale_x(smooth, lambda i: axis.batch_x(done + i + 1))
    return LossSeries(train, val, batch)


def used_lr_series(history: History, envelope: Envelope, buckets: int) -> Series:
    """The LR group 0 actually used, per batch, at x = epochs trained (batch b at b/spe)."""
    axis = Axis.of(history)
    if not axis.in_epochs or axis.steps_per_epoch:
        envelope.update(history.lrs)
        series = envelope.series(history.lrs, buckets)
        return scale_x(series, axis.batch_x)
    # Epoch interval and unknown epoch length: one point per epoch from the epoch records.
    return decimate([e.lr for e in history.epochs], buckets)


def grad_norm_series(history: History, envelope: Envelope, buckets: int) -> Series:
    """The gradient norm before clipping at each optimizer step (``max_grad_norm`` runs), at
    x = epochs trained as for the LR; min and max per dot, so a spike shows."""
    values = history.scalar("grad_norm")
    if not values:
        return Series([], [])
    envelope.update(values)
    return scale_x(envelope.series(values, buckets), Axis.of(history).batch_x)


def sample_steps(start: int, stop: int, points: int, extra: Sequence[int] = ()) -> list[int]:
    """About ``points`` integer steps spread over [start, stop], ends and ``extra`` included.

    ``extra`` are steps where the curve has a corner (segment starts) and ``step - 1`` of each,
    so that a jump stays vertical instead of being smeared across a column.
    """
    if stop < start:
        return []
    span = stop - start
    if span <= points:
        return list(range(start, stop + 1))
    stride = span / points
    steps = {start + int(round(i * stride)) for i in range(points + 1)}
    steps.add(stop)
    for e in extra:
        for s in (e - 1, e):
            if start <= s <= stop:
                steps.add(s)
    return sorted(steps)


def nice_ticks(lo: float, hi: float, count: int, *, integer: bool = False) -> list[float]:
    """Up to about ``count`` round values (1, 2, 2.5, 5 x 10^k apart) within [lo, hi];
    whole numbers only when ``integer``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or count < 1:
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude * 10
    for m in (1, 2, 2.5, 5, 10):
        if integer and (m * magnitude < 1 or not float(m * magnitude).is_integer()):
            continue
        if m * magnitude >= raw:
            step = m * magnitude
            break
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + len(ticks) * step
    if len(ticks) < 2 and count < 16:
        return nice_ticks(lo, hi, count * 2, integer=integer)
    return ticks


def log_ticks(lo: float, hi: float, count: int) -> list[float]:
    """Ticks on a log10 axis (``lo``/``hi`` are log10 values): powers of ten when the range
    spans a few decades, else round values, returned as log10 positions."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    decades = [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1)]
    if len(decades) >= 2:
        stride = max(1, math.ceil(len(decades) / max(count, 1)))
        return decades[::stride]
    linear = nice_ticks(10**lo, 10**hi, count)
    return [math.log10(v) for v in linear if v > 0]


def padded(lo: float, hi: float, fraction: float = 0.05) -> tuple[float, float]:
    """An axis range around [lo, hi] with a margin, never empty."""
    if hi <= lo:
        span = abs(lo) * 0.1 or 1.0
        return lo - span, hi + span
    margin = (hi - lo) * fraction
    return lo - margin, hi + margin
