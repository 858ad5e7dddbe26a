"""Two ranks on the CPU (gloo) through `cosinetui run --nproc 2`: sharding, reduced validation,
commands applied by both ranks at the same step, pause, SIGTERM, a killed rank, and resume on
another world size. Each rank records the LR of every batch it trains (ddp_experiment.py)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from cosinetui import store
from cosinetui.checkpoint import load_checkpoint
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
)
from cosinetui.remote import AttachedSession, is_live
from tests.functional import ddp_experiment

EXP = str(Path(ddp_experiment.__file__))
LIMIT = 300  # seconds: starting three processes that import torch is slow on a loaded machine

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")


@pytest.fixture
def short_dir():
    # Unix socket paths are limited to ~107 bytes: keep run directories short.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ct") as d:
        yield Path(d)


class Launch:
    """`cosinetui ARGS --nproc N --headless` in a session of its own, with per-rank traces."""

    def __init__(
        self, where: Path, *args: str, epochs: int = 2, sleep: float = 0.0, nproc: int = 2, nan_step: int = -1,
        accumulate: int = 1,
    ) -> None:
        self.where, self.trace = where, where / "trace"
        env = dict(os.environ, OMP_NUM_THREADS="1", COSINETUI_TEST_TRACE=str(self.trace),
                   COSINETUI_TEST_EPOCHS=str(epochs), COSINETUI_TEST_BATCH_SLEEP=str(sleep),
                   COSINETUI_TEST_NAN_STEP=str(nan_step), COSINETUI_TEST_ACCUMULATE=str(accumulate))
        self.out = open(where / "out.txt", "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cosinetui", *args, "--nproc", str(nproc), "--headless"],
            cwd=where, env=env, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait(self, timeout: float = LIMIT) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close()
            if self.proc.poll() is None:  # a hang: leave nothing behind
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def output(self) -> str:
        return (self.where / "out.txt").read_text(errors="replace")

    def fields(self, rank: int) -> list[list[str]]:
        path = Path(f"{self.trace}.{rank}")
        return [line.split() for line in (path.read_text() if path.exists() else "").splitlines()]

    def lines(self, rank: int) -> list[tuple[float, float]]:
        """(LR, checksum of the weights) of each batch the rank trained."""
        return [(float(f[0]), float(f[1])) for f in self.fields(rank)]

    def syncs(self, rank: int) -> list[int]:
        """1 where DDP all-reduced the batch's gradients in its backward, else 0."""
        return [int(f[2]) for f in self.fields(rank)]

    def lrs(self, rank: int) -> list[float]:
        return [lr for lr, _ in self.lines(rank)]

    def attach(self, run_dir: Path) -> AttachedSession:
        deadline = time.monotonic() + LIMIT
        while not is_live(run_dir, timeout=0.5):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "rank 0 never served its control socket"
            time.sleep(0.2)  # another process: nothing to await but its socket
        session = AttachedSession(run_dir)
        session.start()
        return session


def next_of(session, kind, timeout=LIMIT):
    while True:
        event = session.next_event(timeout=timeout)
        assert event is not None, f"no {kind.__name__} within {timeout}s"
        assert not isinstance(event, Failed) or kind is Failed, event
        if isinstance(event, kind):
            return event


def val_loss_of(state) -> float:
    model = ddp_experiment.model()
    model.load_state_dict(state)
    total = count = 0
    with torch.no_grad():
        for x, y in ddp_experiment.val_batches():
            total += torch.nn.functional.cross_entropy(model(x), y).item() * len(y)
            count += len(y)
    return total / count


def test_two_ranks_shard_train_and_validate_the_whole_set(short_dir):
    # Rank 1 alone gets a NaN loss at step 3: both ranks skip that step (same weights after).
    run = Launch(short_dir, "run", EXP, "--run-dir", "r", "--on-nan", "continue", nan_step=3)
    assert run.wait() == 0, run.output()
    events = store.read_log(short_dir / "r").events
    start = events[0]
    assert isinstance(start, RunStarted) and start.world_size == 2 and start.backend == "gloo"
    # 160 samples in batches of 16 over 2 ranks: 5 batches per rank per epoch.
    assert start.steps_per_epoch == 5
    assert [len(run.lrs(r)) for r in (0, 1)] == [10, 10]
    assert run.lines(0) == run.lines(1)  # same LR and same weights on both ranks, batch by batch
    assert run.lines(0)[3][1] == run.lines(0)[4][1]  # the NaN step changed no weight
    losses = {e.first_step + i: v for e in events if isinstance(e, BatchChunk) for i, v in enumerate(e.losses)}
    assert sorted(losses) == list(range(10))
    assert math.isnan(losses[3]) and not any(math.isnan(v) for s, v in losses.items() if s != 3)
    last = [e for e in events if isinstance(e, EpochEnd)][-1]
    ck = load_checkpoint(short_dir / "r" / store.CHECKPOINT)
    assert ck["world_size"] == 2
    # The reduced val loss is the 1-process val loss of the same weights (uneven shards, no padding).
    assert last.val_loss == pytest.approx(val_loss_of(ck["model"]), rel=1e-5)
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"


def test_accumulation_all_reduces_once_a_window_and_keeps_the_ranks_equal(short_dir):
    # 5 batches per rank per epoch, windows of 2: the pass's last batch closes a short window.
    run = Launch(short_dir, "run", EXP, "--run-dir", "r", accumulate=2)
    assert run.wait() == 0, run.output()
    assert run.syncs(0) == run.syncs(1) == [0, 1, 0, 1, 1] * 2
    assert run.lines(0) == run.lines(1)  # same weights on both ranks, batch by batch
    checksums = [ck for _, ck in run.lines(0)]
    assert checksums[0] == checksums[1] != checksums[2]  # weights move once a window
    events = store.read_log(short_dir / "r").events
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"


def test_commands_reach_both_ranks_at_the_same_step_then_sigterm_and_resume_on_one(short_dir):
    run_dir = short_dir / "r"
    run = Launch(short_dir, "run", EXP, "--run-dir", "r", epochs=1000, sleep=0.01)
    session = run.attach(run_dir)
    try:
        next_of(session, BatchChunk)
        session.send(AdjustSchedule("reanneal", {"steps": 400, "factor": 0.5}))
        changed = next_of(session, ScheduleChanged)
        session.send(Pause())
        paused = next_of(session, Paused)
        # Both ranks stopped before the same batch, and stay there.
        assert len(run.lrs(0)) == len(run.lrs(1)) == paused.step
        time.sleep(3)
        assert len(run.lrs(0)) == len(run.lrs(1)) == paused.step
        session.send(Resume())
        next_of(session, Resumed)
        next_of(session, BatchChunk)
    finally:
        os.kill(run.proc.pid, signal.SIGTERM)  # what a cluster scheduler sends the launcher
        code = run.wait()
        session.close()
    assert code == 128 + signal.SIGTERM, run.output()
    a, b = run.lrs(0), run.lrs(1)
    n = min(len(a), len(b))
    assert n > changed.step and a[:n] == b[:n]
    assert a[changed.step] == pytest.approx(changed.lrs[0]) and a[changed.step - 1] != a[changed.step]
    events = store.read_log(run_dir).events
    stops = [e for e in events if isinstance(e, CheckpointWritten) and e.reason == "stop"]
    end = events[-1]
    assert len(stops) == 1 and isinstance(end, Finished) and end.reason == "signal"
    assert stops[0].step == end.step and abs(len(a) - len(b)) <= 1 and max(len(a), len(b)) == end.step

    # Resume the 2-rank run on 1 process, to the end of its first epoch.
    again = Launch(short_dir, "resume", "r", "--epochs", "1", nproc=1)
    assert again.wait() == 0, again.output()
    events = store.read_log(run_dir).events
    starts = [i for i, e in enumerate(events) if isinstance(e, RunStarted)]
    resumed = events[starts[-1]]
    assert resumed.world_size == 1 and resumed.backend is None
    if end.step < 5:  # stopped mid-epoch: the epoch restarts from its beginning on 1 rank
        assert resumed.global_step == 0
        chunks = [e for e in events[starts[-1]:] if isinstance(e, BatchChunk)]
        assert sum(len(c.losses) for c in chunks) == 10
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"


def test_a_killed_rank_fails_the_run_naming_it(short_dir):
    run_dir = short_dir / "r"
    run = Launch(short_dir, "run", EXP, "--run-dir", "r", epochs=1000, sleep=0.01)
    session = run.attach(run_dir)
    try:
        next_of(session, BatchChunk)
        pid = int(Path(f"{run.trace}.pid.1").read_text())
        os.kill(pid, signal.SIGKILL)
        code = run.wait()  # bounded: a hang fails the test
    finally:
        session.close()
    assert code == 1, run.output()
    end = store.read_log(run_dir).events[-1]
    assert isinstance(end, Failed) and "rank 1" in end.error and "SIGKILL" in end.error
    assert (run_dir / store.CHECKPOINT).exists()
