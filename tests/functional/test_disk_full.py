"""A full disk (or any write error): one clear message, a checkpoint tried, the log ended with
``failed``, a non-zero exit. Write errors are simulated where every byte of a run is written."""

from __future__ import annotations

import errno
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cosinetui import store
from cosinetui.checkpoint import load_checkpoint
from cosinetui.events import CheckpointWritten, Failed
from cosinetui.trainer import Trainer, TrainerOptions
from tests.functional.tiny_experiment import experiment

TINY = str(Path(__file__).with_name("tiny_experiment.py"))


class FullDisk:
    """Patches store._write: writes to files whose name contains ``which`` fail with ENOSPC
    once ``full`` is set, ``times`` times (None: until the end)."""

    def __init__(self, monkeypatch, which: str, times: int | None = None) -> None:
        self.which, self.times, self.full, self.failures = which, times, False, 0
        real = store._write

        def write(path, fh, data):
            if self.full and self.which in Path(path).name and (self.times is None or self.failures < self.times):
                self.failures += 1
                if len(data) > 1:  # a partial write first, as a filling disk does
                    _ = real(path, fh, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, fh, data)

        monkeypatch.setattr(store, "_write", write)


def _train(run_dir, disk: FullDisk, fill_at: int, **options):
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == fill_at:
            disk.full = True
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    events: list = []
    Trainer(experiment(epochs=6, train_step=step), TrainerOptions(run_dir=run_dir, **options),
            listeners=[events.append]).run()  # never raises
    return events


def test_checkpoint_on_a_full_disk_says_so_and_keeps_the_previous_one(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch, ".checkpoint.pt.")
    events = _train(tmp_path, disk, fill_at=20, checkpoint_every=1)  # in epoch 3 of 8-batch epochs
    end = events[-1]
    assert isinstance(end, Failed) and end.traceback == ""
    assert end.error == (
        f"no space left on device while writing the checkpoint ({tmp_path / store.CHECKPOINT}); "
        "the previous checkpoint (epoch 2) is intact"
    )
    assert load_checkpoint(tmp_path / store.CHECKPOINT)["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    log = store.read_log(tmp_path)
    assert log.problems == [] and log.events[-1] == end


def test_a_full_log_fails_the_run_with_a_checkpoint_and_an_end_record(tmp_path, monkeypatch):
    # --checkpoint-every 0: the log is the first to hit the full disk; room is freed after.
    disk = FullDisk(monkeypatch, store.METRICS, times=1)
    events = _train(tmp_path, disk, fill_at=12, checkpoint_every=0)
    end = events[-1]
    assert isinstance(end, Failed) and end.traceback == ""
    assert end.error.startswith("no space left on device while writing the metrics log")
    # best.pt (the best val epoch's weights) is a separate file; the resume checkpoint is one.
    saved = [e for e in events if isinstance(e, CheckpointWritten) and e.reason != "best"]
    assert [e.reason for e in saved] == ["failure"]
    ck = load_checkpoint(tmp_path / store.CHECKPOINT)
    assert ck["epoch"] >= 1 and ck["step"] >= 12  # the epochs trained are not lost
    log = store.read_log(tmp_path)
    assert log.problems == [] and log.events[-1].type == "failed"


def test_a_log_that_stays_full_still_ends_cleanly(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch, store.METRICS)
    events = _train(tmp_path, disk, fill_at=12, checkpoint_every=0)
    end = events[-1]
    assert isinstance(end, Failed) and "the metrics log could not record this end" in end.error
    assert load_checkpoint(tmp_path / store.CHECKPOINT)["step"] >= 12
    log = store.read_log(tmp_path)
    assert log.problems == []  # a failed write was taken back: no half line
    assert log.events[0].type == "run_started"


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("every", ["0", "1"])
def test_cli_exits_non_zero_with_one_line_on_a_real_write_error(tmp_path, every):
    """A real limit (files past 20 kB cannot grow: EFBIG), through torch.save and the log."""
    run_dir = tmp_path / "r"
    out = subprocess.run(
        [sys.executable, "-m", "cosinetui", "run", TINY, "--epochs", "400", "--run-dir", str(run_dir),
         "--checkpoint-every", every],
        capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(20_000),
    )
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "File too large while writing the metrics log" in failed[0]
    ck = load_checkpoint(run_dir / store.CHECKPOINT)
    assert ck["step"] > 0
    assert store.read_log(run_dir).problems == []
