"""Background runs: `run --detach`, steering through `attach`'s session, `ls`."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cosinetui import store
from cosinetui.events import AdjustSchedule, Finished, Pause, Paused, Resume, ScheduleChanged, Stop
from cosinetui.history import History
from cosinetui.remote import AttachedSession, AttachError, is_live

TINY = str(Path(__file__).with_name("tiny_experiment.py"))


def cosinetui(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosinetui", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def wait_for(session, kind, timeout=30.0):
    while True:
        event = session.next_event(timeout=timeout)
        assert event is not None, f"no {kind.__name__} within {timeout}s"
        if isinstance(event, kind):
            return event


@pytest.fixture
def short_dir():
    # Unix socket paths are limited to ~107 bytes: keep run directories short.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ct") as d:
        yield Path(d)
        # A failed test must not leave a background run training: stop any still live.
        for sock in Path(d).rglob("control.sock"):
            if is_live(sock.parent):
                session = AttachedSession(sock.parent)
                try:
                    session.start()
                except AttachError:
                    continue  # it was ending already
                session.send(Stop())
                session.wait(30)
                session.close()


def test_detached_run_can_be_attached_steered_and_listed(short_dir):
    out = cosinetui("run", TINY, "--epochs", "100000", "--detach", "--name", "bg", cwd=short_dir)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (short_dir / "runs").iterdir()
    assert f"cosinetui attach runs/{run_dir.name}" in out.stdout
    assert is_live(run_dir)
    assert (run_dir / "output.log").stat().st_mode & 0o777 == 0o600

    listing = cosinetui("ls", cwd=short_dir)
    assert listing.returncode == 0 and "live" in listing.stdout and "bg" in listing.stdout

    first = AttachedSession(run_dir)
    first.start()
    first.send(Pause())
    paused = wait_for(first, Paused)
    first.send(AdjustSchedule("reanneal", {"steps": 5}))
    assert wait_for(first, ScheduleChanged).args == {"steps": 5}
    first.close()  # leaving never stops the run
    assert is_live(run_dir)

    second = AttachedSession(run_dir)
    second.start()
    second.send(Resume())
    second.send(Stop())
    end = wait_for(second, Finished)
    assert end.reason == "stopped" and end.step >= paused.step
    second.close()

    log = store.read_log(run_dir)
    assert log.problems == []
    history = History.from_events(log.events)
    assert history.state == "stopped" and len(history.schedule_changes) == 1
    # Nothing missing: batch losses cover every step that was trained.
    assert len(history.losses) == end.step and all(x == x for x in history.losses)
    listing = cosinetui("ls", cwd=short_dir)
    assert "stopped" in listing.stdout


def test_detached_run_that_fails_to_start_says_why(short_dir):
    bad = short_dir / "bad.py"
    bad.write_text("def experiment():\n    raise RuntimeError('nope')\n")
    out = cosinetui("run", str(bad), "--detach", cwd=short_dir)
    assert out.returncode == 2 and "nope" in out.stderr  # checked before going to the background


def test_attach_without_live_runs_is_a_clear_error(short_dir):
    out = cosinetui("attach", cwd=short_dir)
    assert out.returncode == 2 and "no live run" in out.stderr
    out = cosinetui("attach", str(short_dir / "nothing"), cwd=short_dir)
    assert out.returncode == 2 and "cosinetui" in out.stderr and "Traceback" not in out.stderr


def test_ls_with_no_runs(short_dir):
    out = cosinetui("ls", cwd=short_dir)
    assert out.returncode == 0 and "no runs" in out.stdout


def test_resume_of_a_live_run_points_to_attach(short_dir):
    out = cosinetui("run", TINY, "--epochs", "100000", "--detach", "--run-dir", "r", cwd=short_dir)
    assert out.returncode == 0, out.stderr
    again = cosinetui("resume", "r", cwd=short_dir)
    assert again.returncode == 2 and "cosinetui attach r" in again.stderr
    session = AttachedSession(short_dir / "r")
    session.start()
    session.send(Stop())
    assert wait_for(session, Finished).reason == "stopped"
    session.close()
