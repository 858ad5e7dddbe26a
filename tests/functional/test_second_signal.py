"""A second Ctrl+C or SIGTERM exits at once, even while the trainer is inside a long write,
and leaves no partial checkpoint behind."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cosinetui import store
from cosinetui.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]

# An experiment whose second checkpoint write stalls in fsync, as on a slow disk, with the stop
# signals blocked in the training thread: Python cannot run a handler there until it returns.
STALLING = '''
import os, signal, sys, time
from tests.functional.tiny_experiment import experiment as tiny

real_fsync = os.fsync
writes = []

def stalling_fsync(fd):
    if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
        writes.append(fd)
        if len(writes) == 2:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            print("STALLED", flush=True)
            time.sleep(600)
    real_fsync(fd)

os.fsync = stalling_fsync

def experiment():
    return tiny(epochs=5)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_during_a_stalled_checkpoint_exits_at_once(tmp_path, sig):
    exp_file = tmp_path / "stalling.py"
    exp_file.write_text(STALLING)
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosinetui", "run", str(exp_file), "--run-dir", str(run_dir), "--headless"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("STALLED"):
                break
        else:
            pytest.fail(proc.stderr.read() if proc.stderr else "no STALLED line")
        proc.send_signal(sig)
        # The second only once the first is seen: two signals sent back to back while one
        # is pending are one signal for the kernel itself.
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 60)  # without the fix: 600 s asleep
        assert ready, "the first signal went unnoticed"
        first = proc.stderr.readline()
        assert "stopping after the current batch" in first
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "again: exiting without waiting" in err
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert load_checkpoint(run_dir / store.CHECKPOINT)["epoch"] == 1  # the previous one, whole
    assert not any(e.type == "finished" for e in store.read_log(run_dir).events)
