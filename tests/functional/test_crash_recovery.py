"""A run killed before its first checkpoint can be listed and started again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cosinetui import store

TINY = str(Path(__file__).with_name("tiny_experiment.py"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosinetui", *args], capture_output=True, text=True, timeout=120)


def _killed_before_first_checkpoint(run_dir: Path) -> None:
    """What kill -9 in epoch 1 leaves: config, the log's start and some batches, no checkpoint."""
    assert cli("run", TINY, "--epochs", "2", "--run-dir", str(run_dir)).returncode == 0
    lines = (run_dir / store.METRICS).read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["type"] in ("run_started", "batches")][:2]
    (run_dir / store.METRICS).write_text("\n".join(kept) + "\n")
    (run_dir / store.CHECKPOINT).unlink()


def test_ls_names_it_and_resume_starts_it_again(tmp_path):
    run_dir = tmp_path / "runs" / "crashed"
    _killed_before_first_checkpoint(run_dir)
    listed = cli("ls", "--root", str(tmp_path / "runs"))
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if str(run_dir) in line)
    assert row.split()[1] == "crashed"
    assert "resume DIR --restart starts it again from scratch" in listed.stdout
    refused = cli("resume", str(run_dir))  # nothing to resume: only --restart runs its code
    assert refused.returncode == 2 and f"cosinetui resume {run_dir} --restart" in refused.stderr
    assert len(store.read_log(run_dir).events) == 2
    again = cli("resume", str(run_dir), "--restart")
    assert again.returncode == 0, again.stderr
    assert "ended before its first one; starting it again from scratch" in again.stderr
    assert "started" in again.stdout.splitlines()[0]
    log = store.read_log(run_dir)
    assert log.problems == []
    starts = [e for e in log.events if e.type == "run_started"]
    assert len(starts) == 2 and starts[-1].global_step == 0
    assert log.events[-1].type == "finished" and log.events[-1].reason == "completed"
    assert [e.epoch for e in log.events if e.type == "epoch"] == [1, 2]
    assert "finished" in cli("ls", "--root", str(tmp_path / "runs")).stdout


def test_a_missing_checkpoint_the_log_records_is_not_silently_restarted(tmp_path):
    run_dir = tmp_path / "r"
    assert cli("run", TINY, "--epochs", "1", "--run-dir", str(run_dir)).returncode == 0
    (run_dir / store.CHECKPOINT).unlink()
    out = cli("resume", str(run_dir))
    assert out.returncode == 2 and "checkpoint.pt is missing" in out.stderr
