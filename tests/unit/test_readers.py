"""Scalars from other tools' logs -> cosinetui events: tag choice, per-step vs per-epoch
series, epoch boundaries, partial logs, and the bounds on what a file can make us allocate."""

from __future__ import annotations

import math

import pytest

from cosinetui.diagnostics import diagnose
from cosinetui.events import BatchChunk, EpochEnd, RunStarted
from cosinetui.history import History
from cosinetui.readers.scalars import ReaderError, Scalars, choose_tags, describe, to_events


def lightning_like(epochs: int = 3, per_epoch: int = 4, last_partial: int = 0) -> Scalars:
    """The layout of Lightning's loggers: per-step rows, then val and epoch rows at the step
    of the epoch's last batch, an epoch label on each, the LR logged at each epoch start."""
    s = Scalars("lightning-csv", "run", "run/metrics.csv")
    step_loss, epoch_loss, val, lr = [], [], [], []
    step = 0
    for e in range(epochs + (1 if last_partial else 0)):
        lr.append((step, 0.1 * (epochs - e)))
        n = last_partial if e == epochs else per_epoch
        for _ in range(n):
            step_loss.append((step, 1.0 / (step + 1)))
            s.epoch_of_step[step] = e
            step += 1
        if e < epochs:
            val.append((step - 1, 0.5 + 0.01 * e))
            epoch_loss.append((step - 1, 2.0 / (e + 1)))
    s.series = {"train_loss_step": step_loss, "train_loss_epoch": epoch_loss, "val_loss": val, "lr-AdamW": lr}
    return s


def kinds(events):
    return [type(e).__name__ for e in events]


def test_lightning_layout_gives_batches_and_epochs():
    s = lightning_like()
    choice = choose_tags(s)
    assert (choice.train_step, choice.train_epoch, choice.val, choice.lr) == (
        "train_loss_step", "train_loss_epoch", "val_loss", "lr-AdamW")
    events = to_events(s, choice)
    assert kinds(events) == ["RunStarted"] + ["BatchChunk", "EpochEnd"] * 3
    start = events[0]
    assert isinstance(start, RunStarted) and start.epochs == 3 and start.steps_per_epoch == 4
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.step for e in epochs] == [4, 8, 12]
    assert [e.train_loss for e in epochs] == [2.0, 1.0, 2.0 / 3]
    assert [e.val_loss for e in epochs] == [0.5, 0.51, 0.52]
    assert [round(e.lr, 6) for e in epochs] == [0.3, 0.2, 0.1]  # each epoch's own LR
    chunks = [e for e in events if isinstance(e, BatchChunk)]
    assert [c.first_step for c in chunks] == [0, 4, 8]
    assert chunks[1].losses == tuple(1.0 / (s + 1) for s in range(4, 8))


def test_partial_log_leaves_the_last_epoch_in_progress():
    events = to_events(*(lambda s: (s, choose_tags(s)))(lightning_like(last_partial=2)))
    assert kinds(events)[-2:] == ["EpochEnd", "BatchChunk"]
    history = History.from_events(events)
    assert history.epochs_done == 3 and history.step == 14
    assert list(history.current_epoch_losses()) == [1.0 / 13, 1.0 / 14]


def test_only_some_series():
    s = Scalars("tensorboard", "run", "run")
    s.series = {"val/loss": [(1, 1.0), (2, 0.9), (3, 0.95)]}
    events = to_events(s, choose_tags(s))
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.val_loss for e in epochs] == [1.0, 0.9, 0.95]
    assert all(math.isnan(e.train_loss) and math.isnan(e.lr) for e in epochs)
    s.series = {"loss": [(i, 1.0 / (i + 1)) for i in range(50)]}
    history = History.from_events(to_events(s, choose_tags(s)))
    assert history.step == 50 and history.epochs_done == 0  # batches, no epoch boundary known


def test_val_logged_with_epoch_as_step_splits_batches_evenly():
    s = Scalars("tensorboard", "run", "run")
    s.series = {
        "Loss/train": [(i, 1.0) for i in range(30)],
        "Loss/val": [(e, 0.5) for e in range(3)],
        "learning_rate": [(i, 0.1) for i in range(30)],
    }
    s.series["train_loss_epoch"] = [(7, 1.0)]  # at no epoch's step: left out, not an error
    s.series["acc"] = [(e, 0.9) for e in range(3)]
    events = to_events(s, choose_tags(s))
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.step for e in epochs] == [10, 20, 30]
    assert [e.train_loss for e in epochs] == [1.0, 1.0, 1.0]  # the batches' mean
    assert [e.metrics for e in epochs] == [{"acc": 0.9}] * 3


def test_per_epoch_train_tag_is_recognised_by_its_count():
    s = Scalars("tensorboard", "run", "run")
    s.series = {"train_loss": [(e, 1.0 - e / 10) for e in range(5)], "val_loss": [(e, 1.0) for e in range(5)]}
    choice = choose_tags(s)
    assert choice.train_step is None and choice.train_epoch == "train_loss"
    events = to_events(s, choice)
    assert kinds(events) == ["RunStarted"] + ["EpochEnd"] * 5


def test_named_tags_and_unknown_ones():
    s = lightning_like()
    s.series["my_loss"] = s.series["train_loss_step"]
    assert choose_tags(s, train="my_loss").train_step == "my_loss"
    with pytest.raises(ReaderError, match="no scalar tag 'nope' for --val"):
        choose_tags(s, val="nope")
    text = describe(s, choose_tags(s))
    assert "train_loss_step" in text and "learning rate" in text and "val loss" in text


def test_huge_steps_do_not_allocate_by_step():
    # Steps read from a file index nothing: batches are numbered by position.
    s = Scalars("tensorboard", "run", "run")
    s.series = {"loss": [(10**15 + i, 1.0) for i in range(3)], "val_loss": [(2 * 10**15, 1.0)]}
    history = History.from_events(to_events(s, choose_tags(s)))
    assert history.step == 3 and len(history.losses) == 3


def overfitting(epochs: int = 20, per_epoch: int = 10) -> Scalars:
    s = Scalars("tensorboard", "run", "run")
    train, val = [], []
    for e in range(epochs):
        for b in range(per_epoch):
            step = e * per_epoch + b
            train.append((step, 0.02 + 2.0 * math.exp(-(step + 1) / (4 * per_epoch))))
        val.append((step, 0.5 + 1.8 * math.exp(-(e + 1) / 3) if e < 10 else 0.56 * 1.06 ** (e - 9)))
    s.series = {"train/loss": train, "val/loss": val}
    return s


def test_diagnostics_apply_to_converted_logs():
    s = overfitting()
    alerts = diagnose(History.from_events(to_events(s, choose_tags(s))))
    assert "overfitting" in [a.kind for a in alerts]
