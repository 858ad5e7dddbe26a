"""A user's own DDP loop with track() under torchrun (2 ranks, gloo on the CPU): rank 0 alone
writes the run, the epoch loss is over both ranks, and commands reach both ranks at the same
step (an adjustment, a pause that holds both, a stop that ends both). The same for Lightning's
DDP strategy with CosineTUICallback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cosinetui import store
from cosinetui.events import (
    AdjustSchedule,
    BatchChunk,
    CheckpointWritten,
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
from cosinetui.remote import AttachedSession, is_live
from tests.functional.test_ddp import LIMIT, next_of, short_dir  # noqa: F401 - a fixture

LOOP = str(Path(__file__).with_name("ddp_loop.py"))

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")


class Loop:
    def __init__(self, where: Path, epochs: int, sleep: float = 0.0, script: str = LOOP, fail_at: int = -1) -> None:
        self.where, self.trace, self.run_dir = where, where / "trace", where / "r"
        env = dict(os.environ, OMP_NUM_THREADS="1", TRACK_EPOCHS=str(epochs), TRACK_SLEEP=str(sleep),
                   TRACK_FAIL_AT=str(fail_at))
        self.out = open(where / "out.txt", "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             script, str(self.trace), str(self.run_dir)],
            cwd=where, env=env, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait(self) -> int:
        try:
            return self.proc.wait(LIMIT)
        finally:
            self.out.close()
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()

    def output(self) -> str:
        return (self.where / "out.txt").read_text(errors="replace")

    def attach(self) -> AttachedSession:
        deadline = time.monotonic() + LIMIT
        while not is_live(self.run_dir, timeout=0.5):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "rank 0 never served its control socket"
            time.sleep(0.2)  # another process: nothing to await but its socket
        session = AttachedSession(self.run_dir)
        session.start()
        return session

    def adjust_then_stop(self) -> tuple[ScheduleChanged, Finished]:
        """A reanneal, then a stop, sent as batches arrive; the launcher must then exit 0."""
        session = self.attach()
        try:
            next_of(session, BatchChunk)
            session.send(AdjustSchedule("reanneal", {"steps": 300, "factor": 0.5}))
            changed = next_of(session, ScheduleChanged)
            next_of(session, BatchChunk)
            session.send(Stop())
            end = next_of(session, Finished)
        finally:
            code = self.wait()
            session.close()
        assert code == 0, self.output()  # no rank left hanging in a collective
        assert end.reason == "stopped"
        return changed, end

    def lines(self, rank: int) -> list[str]:
        return Path(f"{self.trace}.{rank}").read_text().splitlines()

    def rows(self, rank: int) -> list[tuple[int, float, float]]:
        text = Path(f"{self.trace}.{rank}").read_text()
        return [(int(a), float(b), float(c)) for a, b, c in (ln.split() for ln in text.splitlines() if ln != "end")]


def test_rank_0_writes_the_run_and_the_epoch_loss_is_over_both_ranks(short_dir):  # noqa: F811
    loop = Loop(short_dir, epochs=2)
    assert loop.wait() == 0, loop.output()
    events = store.read_log(loop.run_dir).events
    start = events[0]
    assert isinstance(start, RunStarted) and start.world_size == 2 and start.backend == "gloo"
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2]
    both = loop.rows(0) + loop.rows(1)
    first = [loss for step, _, loss in both if step < 20]  # the step counted before log_batch
    assert epochs[0].train_loss == pytest.approx(sum(first) / len(first), rel=1e-5)
    assert sorted(p.name for p in short_dir.iterdir()) == ["out.txt", "r", "trace.0", "trace.1"]


def test_a_rank_that_fails_ends_the_run_as_failed_not_in_a_hang(short_dir):  # noqa: F811
    loop = Loop(short_dir, epochs=50, fail_at=30)
    assert loop.wait() != 0, loop.output()  # within LIMIT: no rank waits forever
    assert "rank 1 failed" in loop.output()  # torchrun's report of the rank that died
    events = store.read_log(loop.run_dir).events
    end = events[-1]
    assert isinstance(end, Failed) and end.step >= 30
    assert any(isinstance(e, CheckpointWritten) and e.reason == "failure" for e in events)


def test_commands_reach_both_ranks_at_the_same_step(short_dir):  # noqa: F811
    loop = Loop(short_dir, epochs=500, sleep=0.01)
    session = loop.attach()
    try:
        next_of(session, BatchChunk)
        session.send(AdjustSchedule("reanneal", {"steps": 300, "factor": 0.5}))
        changed = next_of(session, ScheduleChanged)
        session.send(Pause())
        paused = next_of(session, Paused)
        held = [len(loop.rows(r)) for r in (0, 1)]
        assert held == [paused.step, paused.step]  # both ranks stopped before the same batch
        time.sleep(2)  # another process's progress: nothing to await
        assert [len(loop.rows(r)) for r in (0, 1)] == held, "a rank trained on while paused"
        session.send(Resume())
        next_of(session, Resumed)
        next_of(session, BatchChunk)
        session.send(Stop())
        end = next_of(session, Finished)
    finally:
        code = loop.wait()
        session.close()
    assert code == 0, loop.output()
    assert end.reason == "stopped"
    a, b = loop.rows(0), loop.rows(1)
    assert len(a) == len(b) == end.step  # both stopped after the same batch
    assert [lr for _, lr, _ in a] == [lr for _, lr, _ in b]  # the same LR, batch by batch
    assert a[changed.step][1] == pytest.approx(changed.lrs[0]) != a[changed.step - 1][1]


def test_lightning_ddp_applies_an_adjustment_and_a_stop_on_both_ranks(short_dir):  # noqa: F811
    pytest.importorskip("lightning", reason="the lightning extra is not installed")
    loop = Loop(short_dir, epochs=0, script=str(Path(__file__).with_name("lightning_ddp.py")))
    changed, end = loop.adjust_then_stop()
    assert loop.output().count("left fit at epoch") == 2
    a, b = loop.lines(0), loop.lines(1)
    assert a == b and len(a) == end.step  # the same LRs, and both stopped after the same batch
    assert float(a[changed.step]) == pytest.approx(changed.lrs[0]) != float(a[changed.step - 1])
    start = store.read_log(loop.run_dir).events[0]
    assert isinstance(start, RunStarted) and start.world_size == 2


def test_transformers_ddp_applies_an_adjustment_and_a_stop_on_both_ranks(short_dir):  # noqa: F811
    pytest.importorskip("transformers", reason="the transformers extra is not installed")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    loop = Loop(short_dir, epochs=0, script=str(Path(__file__).with_name("transformers_ddp.py")))
    changed, end = loop.adjust_then_stop()
    assert loop.output().count("left train at step") == 2
    a, b = loop.lines(0), loop.lines(1)
    assert a == b  # the same LRs, and both stopped after the same step
    # Batches are recorded when the Trainer logs (every 5 steps): the last few may be unlogged.
    assert end.step <= len(a) <= end.step + 5
    assert float(a[changed.step]) == pytest.approx(changed.lrs[0]) != float(a[changed.step - 1])
