"""Scalar series from another tool's log -> cosinetui events (docs/usage.md, "Reading
TensorBoard and Lightning logs").

A reader (TensorBoard, Lightning CSV) hands over ``Scalars``: each tag's points as
(step, value) sorted by step, and the epoch each step belongs to where the log says so (an
``epoch`` column or tag). ``to_events`` picks which tags are the train loss, val loss and LR
(by their usual names, or as the user names them) and rebuilds what cosinetui's own log would
hold: per-step values become ``BatchChunk`` records, per-epoch ones ``EpochEnd`` records, so
every diagnostics rule and every plot applies. Missing series are simply absent.

Batch records are indexed by position (the n-th logged train value is batch n), never by the
step read from the file: a step of 10**12 must not allocate 10**12 slots. For a log that holds
every batch (the usual case) position and step are the same.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from cosinetui.events import BatchChunk, EpochEnd, Event, RunStarted

Point = tuple[int, float]

# Usual names, most specific first; matched without regard to case.
TRAIN_STEP_NAMES = (
    "train_loss_step", "train/loss_step", "batch/loss", "train/batch_loss", "train_loss",
    "train/loss", "loss/train", "training_loss", "training/loss", "train/train_loss", "loss",
)
TRAIN_EPOCH_NAMES = (
    "train_loss_epoch", "train/loss_epoch", "epoch/train_loss", "train/epoch_loss",
    "train_epoch_loss",
)
VAL_NAMES = (
    "val_loss", "val/loss", "epoch/val_loss", "val_loss_epoch", "valid_loss", "valid/loss",
    "validation_loss", "validation/loss", "loss/val", "loss/valid", "loss/validation",
    "eval_loss", "eval/loss", "val/val_loss",
)
LR_NAMES = ("lr", "batch/lr", "learning_rate", "train/learning_rate", "train/lr", "epoch/lr")
# Lightning's LearningRateMonitor: lr-SGD, lr-AdamW, or lr-SGD/pg1 for param group 0 of many.
LR_PATTERNS = (r"lr-[\w.]+", r"lr-[\w.]+/pg1", r"(.*/)?(lr|learning_rate)([-_/].*)?")
EPOCH_NAMES = ("epoch",)
MAX_METRICS = 16  # other per-epoch series carried into each epoch record's metrics


class ReaderError(Exception):
    """A log that cannot be read, or a tag that is not in it; the message says why."""


@dataclass
class Scalars:
    """What a reader found: each tag's (step, value) points, sorted by step."""

    source: str  # "tensorboard" or "lightning-csv"
    name: str  # the run's name (its directory)
    path: str
    series: dict[str, list[Point]] = field(default_factory=dict)
    epoch_of_step: dict[int, int] = field(default_factory=dict)  # from an epoch column/tag
    texts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TagChoice:
    train_step: str | None = None  # per-step train loss -> batch records
    train_epoch: str | None = None  # per-epoch train loss -> epoch records
    val: str | None = None
    lr: str | None = None


def _find(tags: dict[str, str], names: tuple[str, ...], taken: set[str]) -> str | None:
    for name in names:
        tag = tags.get(name)
        if tag is not None and tag not in taken:
            return tag
    return None


def _find_lr(tags: dict[str, str], taken: set[str]) -> str | None:
    found = _find(tags, LR_NAMES, taken)
    if found:
        return found
    for pattern in LR_PATTERNS:
        for low, tag in sorted(tags.items()):
            if tag not in taken and re.fullmatch(pattern, low):
                return tag
    return None


def _check(scalars: Scalars, tag: str | None, what: str) -> str | None:
    if tag is not None and tag not in scalars.series:
        have = ", ".join(sorted(scalars.series)[:20]) or "none"
        raise ReaderError(f"{scalars.path}: no scalar tag {tag!r} for {what} (tags: {have})")
    return tag


def choose_tags(
    scalars: Scalars, train: str | None = None, val: str | None = None, lr: str | None = None
) -> TagChoice:
    """The tags to read as the train loss, val loss and LR: those given, else the usual names.

    A train tag logged once per epoch (at most one value per epoch) is the epoch train loss;
    otherwise it is the per-step one, and an ``..._epoch`` twin, when there is one, is the
    epoch train loss."""
    _check(scalars, train, "--train")
    _check(scalars, val, "--val")
    _check(scalars, lr, "--lr")
    tags = {t.lower(): t for t in scalars.series if t.lower() not in EPOCH_NAMES}
    taken = {t for t in (train, val, lr) if t}
    val = val or _find(tags, VAL_NAMES, taken)
    taken.add(val or "")
    lr = lr or _find_lr(tags, taken)
    taken.add(lr or "")
    train_epoch = None
    if train is None:
        train_epoch = _find(tags, TRAIN_EPOCH_NAMES, taken)
        taken.add(train_epoch or "")
        train = _find(tags, TRAIN_STEP_NAMES, taken)
    if train is not None and _per_epoch(scalars, train, val or train_epoch):
        return TagChoice(None, train_epoch or train, val, lr)
    return TagChoice(train, train_epoch, val, lr)


def _per_epoch(scalars: Scalars, tag: str, other: str | None) -> bool:
    low = tag.lower()
    if low.endswith("_epoch") or low.startswith("epoch/"):
        return True
    if low.endswith("_step") or low.startswith("batch/"):
        return False
    points = scalars.series[tag]
    if scalars.epoch_of_step:
        epochs = [scalars.epoch_of_step.get(s) for s, _ in points]
        return None not in epochs and len(set(epochs)) == len(epochs)
    if other is not None:
        return len(points) <= len(scalars.series[other])
    return False


# --------------------------------------------------------------------------- conversion


def _ffill(points: list[Point], steps: list[int], at: int) -> float:
    """The value of the latest point at or before step ``at`` (NaN before the first)."""
    i = bisect_left(steps, at + 1)
    return points[i - 1][1] if i else math.nan


class _Epochs:
    """Which epoch (0-based position) each step belongs to, and which epochs are over."""

    def __init__(self, scalars: Scalars, per_epoch: list[Point], batches: list[Point]) -> None:
        self.marks = scalars.epoch_of_step
        self.even: int = 0  # epochs to split the batches evenly into (steps that are indices)
        if self.marks:
            labels = sorted(set(self.marks.values()))
            index = {label: i for i, label in enumerate(labels)}
            self.marks = {s: index[e] for s, e in self.marks.items()}
            ends: dict[int, int] = {}
            for step, e in self.marks.items():
                ends[e] = max(ends.get(e, step), step)
            self.ends = [ends[e] for e in range(len(labels))]
        else:
            self.ends = sorted({s for s, _ in per_epoch})
            n = len(self.ends)
            indices = self.ends in (list(range(n)), list(range(1, n + 1)))
            if batches and n and indices and batches[-1][0] > n + 1:
                self.even = n  # val logged with step = epoch: assume equal epochs

    def of(self, step: int, position: int = 0, total: int = 0) -> int:
        if self.even:
            return min(position * self.even // max(total, 1), self.even - 1)
        mark = self.marks.get(step)
        if mark is not None:
            return mark
        return bisect_left(self.ends, step)  # len(ends): after the last end, in progress

    def of_epoch_value(self, step: int) -> int:
        """The epoch a per-epoch value at ``step`` belongs to; len(ends) for none."""
        if self.even:
            i = bisect_left(self.ends, step)
            return i if i < len(self.ends) and self.ends[i] == step else len(self.ends)
        return self.of(step)


def to_events(scalars: Scalars, choice: TagChoice) -> list[Event]:
    """The events cosinetui would have logged for this run (see the module's docstring)."""
    series = scalars.series
    batches = series.get(choice.train_step, []) if choice.train_step else []
    val = series.get(choice.val, []) if choice.val else []
    train_epoch = series.get(choice.train_epoch, []) if choice.train_epoch else []
    lr = series.get(choice.lr, []) if choice.lr else []
    lr_steps = [s for s, _ in lr]
    epochs = _Epochs(scalars, val or train_epoch, batches)

    n_epochs = len(epochs.ends)
    batch_epoch = [epochs.of(s, i, len(batches)) for i, (s, _) in enumerate(batches)]
    vals: dict[int, float] = {}
    trains: dict[int, float] = {}
    for points, into in ((val, vals), (train_epoch, trains)):
        for step, value in points:
            e = epochs.of_epoch_value(step)
            if e < n_epochs:
                into[e] = value
    metrics = _metrics(scalars, choice, epochs, n_epochs)
    # With epoch labels, a last epoch with no epoch value (no validation, no epoch train
    # loss) is the one still in progress when the log was read.
    done = n_epochs
    if scalars.epoch_of_step and done and done - 1 not in vals and done - 1 not in trains:
        done -= 1

    out: list[Event] = []
    position = 0
    per_epoch_batches: list[list[int]] = [[] for _ in range(done + 1)]
    for i, e in enumerate(batch_epoch):
        per_epoch_batches[min(e, done)].append(i)
    lrs_change = False
    first_len = 0
    for e in range(done + 1):
        idx = per_epoch_batches[e]
        if idx:
            losses = tuple(batches[i][1] for i in idx)
            lrs = tuple(_ffill(lr, lr_steps, batches[i][0]) for i in idx)
            lrs_change = lrs_change or len({x for x in lrs if x == x}) > 1
            out.append(BatchChunk(e + 1, position, losses, lrs, len(idx)))
            position += len(idx)
            if e == 0:
                first_len = len(idx)
        if e == done:
            break
        if idx:
            train = trains.get(e, _mean(losses))
            last_step = batches[idx[-1]][0]
        else:
            train = trains.get(e, math.nan)
            last_step = epochs.ends[e] if not epochs.even else e
        epoch_lr = _ffill(lr, lr_steps, last_step) if lr else math.nan
        out.append(
            EpochEnd(e + 1, train, vals.get(e), epoch_lr, step=position, metrics=metrics.get(e, {}))
        )
    start = RunStarted(
        run_name=scalars.name, run_dir=scalars.path, device="", torch_version="", param_count=0,
        epochs=done + (1 if per_epoch_batches[done] else 0), steps_per_epoch=first_len if done else 0,
        interval="batch" if lrs_change else "epoch", schedule=None,  # type: ignore[arg-type]
        config={"source": scalars.source, "tags": choice.__dict__},
    )
    return [start, *out]


def _mean(values: tuple[float, ...]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def _metrics(scalars: Scalars, choice: TagChoice, epochs: _Epochs, n: int) -> dict[int, dict]:
    """Other series with at most one value an epoch, by epoch: carried as epoch metrics."""
    chosen = {choice.train_step, choice.train_epoch, choice.val, choice.lr}
    out: dict[int, dict] = {}
    kept = 0
    for tag, points in scalars.series.items():
        if tag in chosen or tag.lower() in EPOCH_NAMES or kept >= MAX_METRICS or not n:
            continue
        at = [epochs.of_epoch_value(s) for s, _ in points]
        if len(set(at)) != len(at) or any(e >= n for e in at):
            continue
        kept += 1
        for e, (_, value) in zip(at, points, strict=True):
            out.setdefault(e, {})[tag] = value
    return out


def describe(scalars: Scalars, choice: TagChoice) -> str:
    """``--list-tags``: every scalar tag with its number of points and steps, and its role."""
    roles = {
        choice.train_step: "train loss (per step)",
        choice.train_epoch: "train loss (per epoch)",
        choice.val: "val loss",
        choice.lr: "learning rate",
    }
    lines = [f"{'TAG':<32} {'POINTS':>7} {'STEPS':>17}  READ AS"]
    for tag, points in sorted(scalars.series.items()):
        steps = f"{points[0][0]}-{points[-1][0]}" if points else "-"
        role = roles.get(tag, "epoch" if tag.lower() in EPOCH_NAMES else "")
        lines.append(f"{tag[:32]:<32} {len(points):>7} {steps:>17}  {role}")
    for tag, items in sorted(scalars.texts.items()):
        lines.append(f"{tag[:32]:<32} {len(items):>7} {'':>17}  (text)")
    if len(lines) == 1:
        lines.append("(no scalars)")
    return "\n".join(lines)


def run_name(path: Path) -> str:
    """A readable name for a log: its directory (``version_0`` in Lightning's layout is
    prefixed with the directory above it)."""
    d = path if path.is_dir() else path.parent
    d = d.resolve()
    if re.fullmatch(r"version_\d+", d.name) and d.parent.name:
        return f"{d.parent.name}/{d.name}"
    return d.name or str(path)
