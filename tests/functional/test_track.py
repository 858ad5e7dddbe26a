"""cosinetui.track() around a nanoGPT-style loop: the run directory, commands over the control
socket (pause, adjust, stop), failures, signals and resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import torch

from cosinetui import store
from cosinetui.events import (
    AdjustSchedule,
    BatchChunk,
    CheckpointWritten,
    CommandRefused,
    EpochEnd,
    Failed,
    Finished,
    Pause,
    Paused,
    Resume,
    Resumed,
    RunStarted,
    ScheduleChanged,
    Stop,
)
from cosinetui.history import History
from cosinetui.remote import AttachedSession
from cosinetui.runs import summarise
from cosinetui.tracking import TrackError
from tests.functional import nano_loop

TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_dir():
    """Under /tmp: Unix socket paths must stay short."""
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="ct-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def await_event(session, kind, timeout=TIMEOUT):
    seen = []
    while True:
        event = session.next_event(timeout)
        assert event is not None, f"no {kind.__name__} within {timeout}s; saw {seen[-5:]}"
        seen.append(event)
        if isinstance(event, kind):
            return event


def test_steered_over_the_control_socket_then_resumed(short_dir):
    run_dir = short_dir / "nano"
    first_batch = threading.Event()
    outcome = {}

    def loop():
        try:
            outcome["run"], _ = nano_loop.train(1000, run_dir=run_dir, on_batch=lambda run: first_batch.set())
            outcome["after_with"] = True
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = exc
            first_batch.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    assert first_batch.wait(TIMEOUT), "the loop never logged a batch"
    assert "error" not in outcome, outcome.get("error")
    session = AttachedSession(run_dir)
    session.start()
    try:
        session.send(Pause())
        paused = await_event(session, Paused)
        checkpoint = await_event(session, CheckpointWritten)
        assert checkpoint.reason == "pause"
        session.send(AdjustSchedule("restart", {"steps": 400, "peak_lr": 1e-3}))
        changed = await_event(session, ScheduleChanged)
        assert changed.lrs[0] == pytest.approx(1e-3)
        # Still paused: the loop blocked in log_batch the whole time.
        run = outcome["run"] if "run" in outcome else None
        assert run is None  # train() has not returned
        session.send(AdjustSchedule("reanneal", {"steps": -3}))
        refused = await_event(session, CommandRefused)
        assert "steps" in refused.reason
        session.send(Resume())
        resumed = await_event(session, Resumed)
        assert resumed.step == paused.step
        chunk = await_event(session, BatchChunk)
        assert chunk.lrs[0] <= 1e-3 + 1e-12  # the adjusted schedule is in force
        assert chunk.scalars["tokens"][0] == 64.0
        session.send(Stop())
        end = await_event(session, Finished)
        assert end.reason == "stopped"
    finally:
        session.close()
    thread.join(TIMEOUT)
    assert outcome.get("after_with"), outcome.get("error")  # the with block ended cleanly
    stopped = outcome["run"]
    assert stopped.stop_reason == "stopped"
    log = store.read_log(run_dir)
    assert not log.problems
    kinds = [e.type for e in log.events]
    assert kinds[0] == "run_started" and kinds[-1] == "finished"
    assert log.events[0].loop == "track"  # what the exit hint and `resume` go by
    assert [e.reason for e in log.events if isinstance(e, CheckpointWritten)][-1] == "stop"
    assert summarise(run_dir, live=False).state == "stopped"

    # Resume: a fresh process state restores weights, optimizer, the adjusted schedule.
    saved = torch.load(run_dir / store.CHECKPOINT, weights_only=True)
    done_epochs = saved["epoch"]
    epochs_seen = []
    resumed, model = nano_loop.train(
        done_epochs + 2, resume=run_dir, on_batch=lambda run: epochs_seen.append(run.epoch)
    )
    assert resumed.stop_reason is None
    # run.epochs() went on where the run stopped: in the epoch of the first batch not yet
    # trained (the next one, when the stop came at an epoch's last batch).
    per_epoch = len(nano_loop.build()[1])
    assert epochs_seen[0] == saved["step"] // per_epoch >= done_epochs
    history = History.from_events(store.read_log(run_dir).events)
    assert history.state == "finished"
    assert [e.epoch for e in history.epochs] == list(range(1, done_epochs + 3))
    assert history.schedule_changes and history.schedule_changes[0].op == "restart"
    assert max(history.lrs[saved["step"]:]) <= 1e-3 + 1e-12  # the adjustment was restored
    starts = [e for e in store.read_log(run_dir).events if isinstance(e, RunStarted)]
    assert starts[1].global_step == saved["step"] and starts[1].start_epoch == done_epochs


def test_resume_at_an_epoch_boundary_continues_exactly(short_dir):
    whole, _ = nano_loop.train(4, run_dir=short_dir / "whole")
    part, _ = nano_loop.train(4, run_dir=short_dir / "part", stop_at_epoch=2)
    assert part.stop_reason == "stopped" and part.epoch == 2
    nano_loop.train(4, resume=short_dir / "part")

    def losses(d):
        return History.from_events(store.read_log(d).events)

    a, b = losses(short_dir / "whole"), losses(short_dir / "part")
    assert list(b.losses) == list(a.losses)
    assert list(b.lrs) == list(a.lrs)
    assert [e.val_loss for e in b.epochs] == [e.val_loss for e in a.epochs]


def test_resume_refuses_a_planted_checkpoint_link(short_dir):
    part, _ = nano_loop.train(4, run_dir=short_dir / "part", stop_at_epoch=1)
    checkpoint = short_dir / "part" / store.CHECKPOINT
    elsewhere = short_dir / "elsewhere.pt"
    checkpoint.rename(elsewhere)
    checkpoint.symlink_to(elsewhere)  # what another user could plant in a shared directory
    with pytest.raises(TrackError, match="symbolic link"):
        nano_loop.train(4, resume=short_dir / "part")


def test_an_exception_is_recorded_with_a_checkpoint_and_raised(short_dir):
    with pytest.raises(RuntimeError, match="boom"):
        nano_loop.train(3, run_dir=short_dir / "f", fail_at_step=5)
    events = store.read_log(short_dir / "f").events
    failed = events[-1]
    assert isinstance(failed, Failed) and "RuntimeError: boom" in failed.error
    assert "boom in the user's loop" in failed.traceback
    assert [e.reason for e in events if isinstance(e, CheckpointWritten)][-1] == "failure"
    assert summarise(short_dir / "f", live=False).state == "failed"


def test_a_torch_scheduler_is_checkpointed_but_not_adjustable(short_dir):
    def steer(run):
        if run.step == 2:
            run.send(AdjustSchedule("retime", {"T_max": 10}))
        if run.step == 3:
            run.send(Stop())

    run, _ = nano_loop.train(5, run_dir=short_dir / "t", scheduler="torch", on_batch=steer)
    events = store.read_log(short_dir / "t").events
    refusal = next(e for e in events if isinstance(e, CommandRefused))
    assert "CosineAnnealingLR" in refusal.reason and "AdjustableCosineLR" in refusal.reason
    assert not events[0].schedule  # no plan to draw
    resumed, _ = nano_loop.train(1, resume=short_dir / "t", scheduler="torch")
    assert resumed.step > 3
    assert isinstance(store.read_log(short_dir / "t").events[-1], Finished)


def test_mean_train_loss_is_sample_weighted(short_dir):
    import cosinetui

    with cosinetui.track(epochs=1, run_dir=short_dir / "w", lines=False) as run:
        run.log("acc", 0.0)
        run.log_batch(torch.tensor(1.0), batch_size=1)
        run.log("acc", torch.tensor(1.0))
        run.log_batch(4.0, batch_size=1)
        run.log_batch(1.0, batch_size=2)  # no acc: left out of its mean
        run.log_epoch()
    epoch = next(e for e in store.read_log(short_dir / "w").events if isinstance(e, EpochEnd))
    assert epoch.train_loss == pytest.approx((1.0 + 4.0 + 2 * 1.0) / 4)
    assert epoch.train_metrics == {"acc": pytest.approx(0.5)}


def test_device_loss_path_records_the_same_run(short_dir, monkeypatch):
    """Losses kept as tensors until the chunk is flushed (the CUDA/MPS path, forced on the
    CPU) give the same log as losses read at once."""
    import cosinetui.tracking as tracking

    nano_loop.train(2, run_dir=short_dir / "host")
    real_start = tracking.Run.start

    def device_path(self):
        real_start(self)
        self._read_cpu = False

    monkeypatch.setattr(tracking.Run, "start", device_path)
    nano_loop.train(2, run_dir=short_dir / "device")
    host = History.from_events(store.read_log(short_dir / "host").events)
    device = History.from_events(store.read_log(short_dir / "device").events)
    assert list(device.losses) == list(host.losses) and len(host.losses) > 0
    assert [e.train_loss for e in device.epochs] == [e.train_loss for e in host.epochs]


def test_script_headless_lines_and_sigint(short_dir):
    """Run as a plain script: headless lines on stdout; Ctrl+C stops after a checkpoint with
    130 and the resume command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.functional.nano_loop", "--epochs", "100000"],
        cwd=short_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("run nano started: 100000 epochs"), first + proc.stderr.read()
        second = proc.stdout.readline()  # an epoch line: the loop is in its batches
        assert second.startswith("epoch"), second
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "resume with: cosinetui resume runs/nano-" in err
    assert "finished (signal)" in out
    assert "script done" not in out  # Ctrl+C ends the script, as it would without cosinetui
    run_dir = next((short_dir / "runs").iterdir())
    assert (run_dir / store.CHECKPOINT).exists()
    assert summarise(run_dir, live=False).state == "stopped"
