"""The real ``cosinetui`` command in a real terminal: tmux at 80x24, keys in, screen out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cosinetui import store
from cosinetui.events import CheckpointWritten, Finished, Stop
from cosinetui.history import History
from cosinetui.remote import AttachedSession, is_live

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def cosinetui_command() -> str:
    script = Path(sys.executable).with_name("cosinetui")
    if script.exists():
        return str(script)
    found = shutil.which("cosinetui")
    if found is None:
        pytest.skip("the cosinetui command is not installed (pip install -e .)")
    return found


class Tmux:
    """One tmux server of our own (its own socket), one 80x24 window running a command."""

    def __init__(self, cwd: Path) -> None:
        self.socket = f"cosinetui-test-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout

    def start(self, command: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "COLORTERM"}
        subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "t",
             "-x", "80", "-y", "24", "-c", str(self.cwd),
             f"env -u COLORTERM TERM=xterm-256color {command}; echo EXIT=$?; sleep 60"],
            check=True, env=env, timeout=10,
        )  # fmt: skip

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Poll the pane (another process: nothing to await) until ``text`` shows."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never showed; the screen:\n{screen}")
            time.sleep(0.2)

    def wait_gone(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text not in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never went away; the screen:\n{screen}")
            time.sleep(0.2)

    def pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip())

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux(tmp_path):
    session = Tmux(tmp_path)
    yield session
    session.kill()


def run_dir(cwd: Path) -> Path:
    (found,) = (cwd / "runs").iterdir()
    return found


def test_dashboard_at_80x24_pause_then_quit_with_a_checkpoint(tmux, tmp_path):
    tmux.start(cosinetui_command())
    tmux.wait_for("running")
    screen = tmux.wait_for("space pause")
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    for part in ("loss", "LR", "epochs", "warnings", "q quit"):
        assert part in screen
    tmux.keys("Space")
    tmux.wait_for("paused")
    tmux.wait_for("space resume")
    tmux.keys("a")
    screen = tmux.wait_for("Adjust schedule")
    assert "reanneal" in screen and "Apply" in screen
    tmux.keys("Escape")  # alone: ESC and a key at once would read as Alt+key
    tmux.wait_gone("Adjust schedule")
    tmux.keys("q")
    tmux.wait_for("Stop and checkpoint")
    tmux.keys("y")
    tmux.wait_for("EXIT=0")
    events = store.read_log(run_dir(tmp_path)).events
    assert isinstance(events[-1], Finished) and events[-1].reason == "stopped"
    assert any(isinstance(e, CheckpointWritten) and e.reason == "stop" for e in events)
    assert (run_dir(tmp_path) / store.CHECKPOINT).exists()


def test_hang_up_detaches_and_the_run_goes_on(tmux, tmp_path):
    """A dropped SSH connection: the terminal goes away and the process gets SIGHUP. The run
    keeps training in the background, with a checkpoint, and can be attached again."""
    tmux.start(cosinetui_command())
    tmux.wait_for("running")
    shell = tmux.pid()
    (child,) = subprocess.run(
        ["pgrep", "-P", str(shell)], capture_output=True, text=True, timeout=10
    ).stdout.split()
    tmux.kill()  # closes the pty: SIGHUP to the dashboard
    run = run_dir(tmp_path)
    deadline = time.monotonic() + 60
    while True:  # the dashboard's process ends...
        try:
            os.kill(int(child), 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the dashboard did not exit after SIGHUP"
        time.sleep(0.2)
    assert is_live(run)  # ...and the run trains on in its own process
    session = AttachedSession(run)
    session.start()
    history = History()
    before = None
    while True:
        event = session.next_event(timeout=30)
        assert event is not None
        history.apply(event)
        if isinstance(event, CheckpointWritten) and before is None:
            before = event  # the detach checkpoint (or a later epoch's)
            session.send(Stop())
        if isinstance(event, Finished):
            break
    session.close()
    assert history.end.reason == "stopped"
    events = store.read_log(run).events
    assert not any(isinstance(e, Finished) and e.reason == "signal" for e in events)
    assert isinstance(events[-1], Finished) and events[-1].reason == "stopped"


@pytest.mark.parametrize(("flag", "expected"), [((), "1"), (("--no-mouse",), "0")])
def test_no_mouse_leaves_the_mouse_to_the_terminal(tmux, tmp_path, flag, expected):
    tiny = Path(__file__).with_name("tiny_experiment.py")
    subprocess.run(
        [sys.executable, "-m", "cosinetui", "run", str(tiny), "--epochs", "2", "--run-dir", "r"],
        cwd=tmp_path, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    tmux.start(f"{cosinetui_command()} show r {' '.join(flag)}")
    tmux.wait_for("finished")
    # tmux knows whether the program asked the terminal for mouse reports.
    assert tmux.tmux("display-message", "-p", "-t", "t", "#{mouse_any_flag}").strip() == expected


def test_the_dashboard_shows_while_the_experiment_loads_and_shows_its_failure(tmux, tmp_path):
    """The first frame does not wait for torch or the experiment; an experiment that cannot
    start fails inside the dashboard, and its error is printed again on the way out."""
    slow = tmp_path / "slow_bad.py"
    slow.write_text("import time\ntime.sleep(4)\nraise RuntimeError('no data here')\n")
    tmux.start(f"{cosinetui_command()} run {slow} --entry experiment")
    screen = tmux.wait_for("slow_bad", timeout=30)  # the file's name until the run names itself
    assert "starting…" in screen
    assert "q quit" in tmux.wait_for("q quit")
    tmux.wait_for("failed", timeout=60)
    tmux.keys("q")
    screen = tmux.wait_for("EXIT=2")
    assert "no data here" in screen
