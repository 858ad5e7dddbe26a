"""The trainer on a tiny real model: events, commands at batch boundaries, NaN, checkpoints, resume."""

from __future__ import annotations

import math

import pytest
import torch

from cosinetui import store
from cosinetui.checkpoint import load_checkpoint
from cosinetui.events import (
    AdjustSchedule,
    Alert,
    BatchChunk,
    CheckpointWritten,
    CommandRefused,
    EpochEnd,
    Finished,
    Pause,
    Paused,
    Resume,
    Resumed,
    RunStarted,
    SaveCheckpoint,
    ScheduleChanged,
    Stop,
)
from cosinetui.history import History
from cosinetui.schedule import CosineSchedule
from cosinetui.session import TrainerSession
from cosinetui.trainer import Trainer, TrainerOptions
from tests.functional.tiny_experiment import experiment


def train(exp, run_dir, **options):
    """Run a trainer to the end in this thread; return its events."""
    events = []
    trainer = Trainer(exp, TrainerOptions(run_dir=run_dir, **options), listeners=[events.append])
    trainer.run()
    return events, trainer


def batch_losses(events):
    out = {}
    for e in events:
        if isinstance(e, BatchChunk):
            for i, (loss, lr) in enumerate(zip(e.losses, e.lrs, strict=True)):
                out[e.first_step + i] = (loss, lr)
    return out


def test_event_order_and_content(tmp_path):
    events, trainer = train(experiment(epochs=3), tmp_path)
    assert isinstance(events[0], RunStarted)
    start = events[0]
    assert start.epochs == 3 and start.steps_per_epoch == 8 and start.device == "cpu"
    assert start.param_count == sum(p.numel() for p in trainer.model.parameters())
    assert start.schedule["segments"]
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert all(math.isfinite(e.train_loss) and e.val_loss is not None for e in epochs)
    assert all(0 <= e.metrics["acc"] <= 1 for e in epochs)
    assert epochs[-1].step == 24
    # Each epoch ends with its batches already delivered, then a checkpoint.
    losses = batch_losses(events)
    assert sorted(losses) == list(range(24))
    for e in epochs:
        idx = events.index(e)
        assert max(s for c in events[:idx] if isinstance(c, BatchChunk) for s in [c.first_step + len(c.losses)]) == e.step
        assert isinstance(events[idx + 1], (CheckpointWritten, Alert))
    # The epoch LR follows the cosine over 3 epochs: peak in epoch 1, lower later.
    sched = CosineSchedule.from_state(start.schedule)
    assert [e.lr for e in epochs] == [sched.lr_at(k)[0] for k in range(3)]


def test_metrics_log_replays_to_the_same_history(tmp_path):
    events, trainer = train(experiment(epochs=2), tmp_path)
    replay = History.from_events(store.read_log(tmp_path).events)
    assert [e.train_loss for e in replay.epochs] == [e.train_loss for e in trainer.history.epochs]
    assert list(replay.losses) == list(trainer.history.losses)
    assert replay.state == "finished"


def test_same_seed_same_losses(tmp_path):
    a, _ = train(experiment(epochs=2), tmp_path / "a")
    b, _ = train(experiment(epochs=2), tmp_path / "b")
    assert batch_losses(a) == batch_losses(b)


def _pausing_step(at: int, trainer_box: list, command_factory=Pause):
    """A train_step that sends a command from inside batch ``at`` (0-based)."""
    calls = {"n": 0}

    def step(model, batch):
        if calls["n"] == at:
            trainer_box[0].send(command_factory())
        calls["n"] += 1
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    return step


def test_pause_takes_effect_before_the_next_batch(tmp_path):
    box: list = []
    exp = experiment(epochs=2, train_step=_pausing_step(2, box))
    session = TrainerSession(exp, TrainerOptions(run_dir=tmp_path))
    box.append(session.trainer)
    session.start()
    paused = _wait_for(session, Paused)
    assert paused.step == 3 and paused.reason == "user"  # batch 3 was already running
    # While paused, commands still work, and no batch runs.
    session.send(SaveCheckpoint())
    ck = _wait_for(session, CheckpointWritten, lambda e: e.reason == "user")
    assert ck.step == 3
    assert session.trainer.step == 3
    session.send(Resume())
    assert isinstance(_wait_for(session, Resumed), Resumed)
    assert _wait_for(session, Finished).step == 16
    assert session.wait(10)


def _wait_for(session, kind, predicate=lambda e: True, timeout=30.0):
    while True:
        event = session.next_event(timeout=timeout)
        assert event is not None, f"no {kind.__name__} within {timeout}s"
        if isinstance(event, kind) and predicate(event):
            return event
        assert event.type not in ("finished", "failed"), f"run ended before {kind.__name__}: {event}"


def test_adjust_changes_the_lrs_the_optimizer_uses(tmp_path):
    box: list = []
    opts: list = []
    used: list[float] = []

    def opt_factory(params):
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        opts.append(opt)
        return opt

    def step(model, batch):
        used.append(opts[0].param_groups[0]["lr"])
        if len(used) == 5:
            box[0].send(AdjustSchedule("reanneal", {"factor": 0.5}))
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    exp = experiment(epochs=2, interval="batch", optimizer=opt_factory, train_step=step)
    session = TrainerSession(exp, TrainerOptions(run_dir=tmp_path))
    box.append(session.trainer)
    session.start()
    changed = _wait_for(session, ScheduleChanged)
    _wait_for(session, Finished)
    assert changed.step == 5 and changed.op == "reanneal"
    planned = CosineSchedule.from_state(session.trainer.history.run.schedule)
    assert used[:5] == [planned.lr_at(k)[0] for k in range(5)]
    assert used[5] == pytest.approx(0.5 * planned.lr_at(5)[0], rel=1e-12)
    after = CosineSchedule.from_state(changed.schedule)
    assert used[5:] == [after.lr_at(k)[0] for k in range(5, 16)]
    assert used[-1] < used[5]


def test_refused_adjust_leaves_the_run_unchanged(tmp_path):
    box: list = []
    exp = experiment(
        epochs=3, train_step=_pausing_step(10, box, lambda: AdjustSchedule("retime", {"T_max": 1}))
    )
    events = []
    trainer = Trainer(exp, TrainerOptions(run_dir=tmp_path), listeners=[events.append])
    box.append(trainer)
    trainer.run()
    refused = [e for e in events if isinstance(e, CommandRefused)]
    assert len(refused) == 1 and "T_max" in refused[0].reason
    assert not any(isinstance(e, ScheduleChanged) for e in events)
    start = events[0]
    sched = CosineSchedule.from_state(start.schedule)
    assert [e.lr for e in events if isinstance(e, EpochEnd)] == [sched.lr_at(k)[0] for k in range(3)]
    assert events[-1].reason == "completed"


def test_nan_skips_the_step_alerts_and_pauses(tmp_path):
    calls = {"n": 0}
    weights = {}

    def step(model, batch):
        calls["n"] += 1
        x, y = batch
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if calls["n"] == 4:
            weights["before"] = [p.detach().clone() for p in model.parameters()]
            return loss * float("nan")
        if calls["n"] == 5:
            weights["after"] = [p.detach().clone() for p in model.parameters()]
        return loss

    session = TrainerSession(experiment(epochs=1, train_step=step), TrainerOptions(run_dir=tmp_path))
    session.start()
    paused = _wait_for(session, Paused)
    assert paused.reason == "nan"
    history = session.trainer.history
    assert math.isnan(history.losses[3])
    assert any(a.kind == "nan" for a in history.alerts.values())
    session.send(Resume())
    _wait_for(session, Finished)
    # The NaN batch did not move the weights (SGD momentum would have, had it stepped).
    assert all(torch.equal(a, b) for a, b in zip(weights["before"], weights["after"], strict=True))
    assert all(torch.isfinite(p).all() for p in session.trainer.model.parameters())


def test_the_device_path_reports_what_the_cpu_path_reports(tmp_path):
    """CUDA and MPS keep each loss on the device and copy a chunk at once; forced on the CPU,
    that path gives the same losses as the CPU's float path, and handles a NaN batch by
    zeroing its gradients (no host branch), then applying the NaN policy."""

    def run(run_dir, on_host, step=None):
        events = []
        kwargs = {} if step is None else {"train_step": step}
        options = TrainerOptions(run_dir=run_dir, on_nan="stop")
        trainer = Trainer(experiment(epochs=2, **kwargs), options, [events.append])
        trainer._on_host = on_host
        trainer.run()
        return events, trainer

    host, _ = run(tmp_path / "host", True)
    device, _ = run(tmp_path / "device", False)
    assert batch_losses(device) == batch_losses(host) and len(batch_losses(host)) == 16
    assert all(isinstance(e.losses[0], float) for e in device if isinstance(e, BatchChunk))

    calls = {"n": 0}

    def nan_at_4(model, batch):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss * float("nan") if calls["n"] == 4 else loss

    events, trainer = run(tmp_path / "nan", False, nan_at_4)
    assert isinstance(events[-1], Finished) and events[-1].reason == "nan"
    assert math.isnan(batch_losses(events)[3][0])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_a_float64_loss_is_reported_as_float32_on_the_cpu_too(tmp_path):
    def step(model, batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1]).double() / 3

    events, _ = train(experiment(epochs=1, train_step=step), tmp_path)
    losses = [loss for loss, _ in batch_losses(events).values()]
    assert losses and all(torch.tensor(v, dtype=torch.float32).item() == v for v in losses)


def test_a_pause_does_not_count_in_the_epoch_time(tmp_path, monkeypatch):
    """The epoch's seconds (and so its samples/s and the ETA) leave out time spent paused: the
    trainer's clock jumps an hour while it is paused, and the epoch still takes seconds."""
    import time
    import types

    import cosinetui.trainer as trainer_module

    hour = {"offset": 0.0}
    clock = types.SimpleNamespace(
        perf_counter=lambda: time.perf_counter() + hour["offset"],
        monotonic=time.monotonic,
        time=time.time,
    )
    monkeypatch.setattr(trainer_module, "time", clock)
    session = TrainerSession(experiment(epochs=1, batches=16), TrainerOptions(run_dir=tmp_path))
    session.send(Pause())  # applied at the first batch boundary of epoch 1
    session.start()
    _wait_for(session, Paused)
    hour["offset"] = 3600.0
    session.send(Resume())
    end = _wait_for(session, EpochEnd)
    assert end.seconds < 600 and end.samples_per_s > 16 * 16 / 600
    _wait_for(session, Finished)


def test_nan_stop_policy(tmp_path):
    exp = experiment(epochs=3, train_step=lambda m, b: torch.tensor(float("inf"), requires_grad=True))
    events, _ = train(exp, tmp_path, on_nan="stop")
    assert isinstance(events[-1], Finished) and events[-1].reason == "nan"
    assert not any(isinstance(e, EpochEnd) for e in events)


def test_exception_in_user_code_fails_cleanly_with_checkpoint(tmp_path):
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == 11:
            raise RuntimeError("user bug")
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    events, _ = train(experiment(epochs=3, train_step=step), tmp_path)
    failed = events[-1]
    assert failed.type == "failed" and "user bug" in failed.error and "RuntimeError" in failed.traceback
    ck = load_checkpoint(tmp_path / store.CHECKPOINT)
    assert ck["epoch"] == 1 and ck["step"] == 10
    assert any(isinstance(e, CheckpointWritten) and e.reason == "failure" for e in events)
    assert store.read_log(tmp_path).events[-1].type == "failed"


def test_checkpoint_write_that_fails_midway_keeps_the_previous_one(tmp_path, monkeypatch):
    train(experiment(epochs=1), tmp_path)
    good = (tmp_path / store.CHECKPOINT).read_bytes()

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        store.atomic_write(tmp_path / store.CHECKPOINT, lambda fh: torch.save({}, fh))
    assert (tmp_path / store.CHECKPOINT).read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert load_checkpoint(tmp_path / store.CHECKPOINT)["epoch"] == 1


def _stop_at(step_no: int, box: list):
    return _pausing_step(step_no, box, lambda: Stop("stopped"))


@pytest.mark.parametrize("stop_after_batch", [15, 11], ids=["epoch-boundary", "mid-epoch"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, stop_after_batch):
    """Stop (after an adjustment), resume, and get the same losses and LRs as one straight run."""

    def adjusting(box, stop_at=None, adjust=True):
        calls = {"n": 0}

        def step(model, batch):
            if adjust and calls["n"] == 3:
                box[0].send(AdjustSchedule("reanneal", {"steps": 3, "eta_min": 0.01}))
            if stop_at is not None and calls["n"] == stop_at:
                box[0].send(Stop())
            calls["n"] += 1
            x, y = batch
            return torch.nn.functional.cross_entropy(model(x), y)

        return step

    def run(run_dir, stop_at=None, resume=False):
        box: list = []
        events: list = []
        exp = experiment(epochs=4, interval="epoch", train_step=adjusting(box, stop_at, adjust=not resume))
        trainer = Trainer(exp, TrainerOptions(run_dir=run_dir, resume=resume), listeners=[events.append])
        box.append(trainer)
        trainer.run()
        return events

    straight = run(tmp_path / "a")
    stopped = run(tmp_path / "b", stop_at=stop_after_batch)
    assert stopped[-1].reason == "stopped"
    resumed = run(tmp_path / "b", resume=True)
    assert resumed[-1].reason == "completed"
    # The adjustment made before the checkpoint is part of the resumed schedule, not re-applied.
    assert not any(isinstance(e, ScheduleChanged) for e in resumed)
    full = batch_losses(straight)
    again = batch_losses(resumed)
    assert again and all(full[s] == again[s] for s in again)
    assert set(full) == set(batch_losses(stopped)) | set(again)
    ends = {e.epoch: e for e in straight if isinstance(e, EpochEnd)}
    for e in resumed:
        if isinstance(e, EpochEnd):
            assert (e.train_loss, e.val_loss, e.lr) == (ends[e.epoch].train_loss, ends[e.epoch].val_loss, ends[e.epoch].lr)
    # The appended log replays to the straight run's history.
    replay = History.from_events(store.read_log(tmp_path / "b").events)
    assert [e.train_loss for e in replay.epochs] == [ends[k].train_loss for k in sorted(ends)]
    assert list(replay.losses) == [full[s][0] for s in sorted(full)]


def test_session_relays_events_across_threads(tmp_path):
    session = TrainerSession(experiment(epochs=1), TrainerOptions(run_dir=tmp_path))
    session.start()
    assert session.wait(30)
    events = session.drain()
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], Finished)
    assert session.done


def test_sync_free_nonfinite_guard_zeroes_gradients_on_the_device():
    from cosinetui.device import drop_grads_unless

    model = torch.nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    drop_grads_unless(torch.tensor(True), model.parameters())
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters(), strict=True))
    drop_grads_unless(torch.isfinite(torch.tensor(float("nan"))), model.parameters())
    assert all(not p.grad.any() for p in model.parameters())
