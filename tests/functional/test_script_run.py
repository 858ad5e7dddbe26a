"""`cosinetui run train.py`: a training script that calls cosinetui.track(), headless, detached
and under the dashboard (driven through Pilot)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cosinetui import launch, store
from cosinetui.cli import main
from cosinetui.events import Finished, Stop
from cosinetui.history import History
from cosinetui.remote import AttachedSession, AttachError, is_live
from cosinetui.scripts import is_script
from tests.functional.conftest_ui import press

NANO = str(Path(__file__).with_name("nano_loop.py"))
TINY = str(Path(__file__).with_name("tiny_experiment.py"))
ROOT = Path(__file__).resolve().parents[2]


def cosinetui(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosinetui", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture
def short_dir():
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ct") as d:
        yield Path(d)
        for sock in Path(d).rglob("control.sock"):  # never leave a run training
            if is_live(sock.parent):
                session = AttachedSession(sock.parent)
                try:
                    session.start()
                except AttachError:
                    continue
                session.send(Stop())
                session.wait(30)
                session.close()


def test_a_file_without_experiment_is_a_script(tmp_path):
    assert is_script(NANO)
    assert not is_script(TINY)
    (tmp_path / "imported.py").write_text("from somewhere import experiment\n")
    assert not is_script(str(tmp_path / "imported.py"))
    assert not is_script("pkg.module:fn")


def test_headless_script_with_its_own_arguments_then_resume(short_dir):
    out = cosinetui("run", NANO, "--headless", "--name", "mine", "--", "--epochs", "2", cwd=short_dir)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (short_dir / "runs").iterdir()
    assert run_dir.name.startswith("mine-")
    assert "run mine started: 2 epochs" in out.stdout  # track() took the name given to run
    assert "script done: completed" in out.stdout
    config = store.read_config(run_dir)
    assert config["mode"] == "script" and config["script_args"] == ["--epochs", "2"]
    history = History.from_events(store.read_log(run_dir).events)
    assert history.state == "finished" and history.epochs_done == 2
    again = cosinetui("resume", str(run_dir), "--headless", cwd=short_dir)
    assert again.returncode == 0, again.stderr
    assert "run mine resumed: 2 epochs" in again.stdout
    longer = cosinetui("resume", str(run_dir), "--epochs", "5", "--headless", cwd=short_dir)
    assert longer.returncode == 2 and "--epochs" in longer.stderr and "after --" in longer.stderr
    assert "note:" not in longer.stderr  # no word about a schedule it will not touch


def test_script_that_never_calls_track_is_told_so(short_dir):
    script = short_dir / "plain.py"
    script.write_text("import sys\nprint('args', sys.argv[1:])\n")
    out = cosinetui("run", str(script), "--headless", "--", "-x", "1", cwd=short_dir)
    assert out.returncode == 1
    assert "args ['-x', '1']" in out.stdout
    assert "ended without calling cosinetui.track()" in out.stderr


def test_experiment_options_are_refused_for_a_script(short_dir):
    out = cosinetui("run", NANO, "--lr", "0.1", cwd=short_dir)
    assert out.returncode == 2
    assert "--lr" in out.stderr and "after --" in out.stderr and "Traceback" not in out.stderr


def test_detached_script_can_be_attached_and_stopped(short_dir):
    out = cosinetui("run", NANO, "--detach", "--", "--epochs", "100000", cwd=short_dir)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (short_dir / "runs").iterdir()
    session = AttachedSession(run_dir)
    session.start()
    try:
        session.send(Stop())
        assert session.wait(60)
    finally:
        session.close()
    events = store.read_log(run_dir).events
    assert isinstance(events[-1], Finished) and events[-1].reason == "stopped"


class _Terminal:
    """Standard output as a terminal, so `run` chooses the dashboard."""

    def __init__(self, stream):
        self._stream = stream

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def test_script_under_the_dashboard_through_pilot(short_dir, monkeypatch):
    """The real `cosinetui run train.py` path: the script trains in the child process, the
    dashboard (driven by Pilot) shows it, pauses it, resumes it and stops it on quit."""
    from cosinetui.ui import app as app_module
    from cosinetui.ui.screens.confirm import QuitScreen

    seen = {}

    async def drive(session) -> int:
        app = app_module.CosineApp(session)
        async with app.run_test(size=(80, 24)) as pilot:
            await app.wait_until(lambda h: h.epochs_done >= 1)
            await pilot.pause()
            seen["rows"] = app.epoch_table.row_count
            seen["name"] = app.history.run.run_name
            await press(pilot, "space")
            await app.wait_until(lambda h: h.state == "paused")
            step = app.history.step
            await press(pilot, "space")
            await app.wait_until(lambda h: h.step > step)
            await press(pilot, "q")
            assert isinstance(app.screen, QuitScreen)
            await press(pilot, "y")
            await app.wait_until(lambda h: h.end is not None)
            seen["end"] = app.history.end
        return app.return_value or 0

    monkeypatch.setattr(app_module, "run_dashboard", lambda session, mouse=True: asyncio.run(drive(session)))
    monkeypatch.setattr(sys, "stdout", _Terminal(sys.stdout))
    monkeypatch.setattr(sys, "argv", ["cosinetui", "run", NANO, "--", "--epochs", "100000"])
    monkeypatch.chdir(short_dir)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(SystemExit) as exit_:
        main.main(args=sys.argv[1:], standalone_mode=False)
    assert exit_.value.code == 0
    assert seen["rows"] >= 1 and seen["name"] == "nano"
    assert isinstance(seen["end"], Finished) and seen["end"].reason == "stopped"
    (run_dir,) = (short_dir / "runs").iterdir()
    assert (run_dir / store.CHECKPOINT).exists()
    assert not is_live(run_dir)
    assert launch.OUTPUT_LOG in {p.name for p in run_dir.iterdir()}


def test_a_failing_script_is_recorded_and_its_traceback_shown_once(short_dir):
    script = short_dir / "fails.py"
    script.write_text(
        "import torch, cosinetui\n"
        "m = torch.nn.Linear(2, 1)\n"
        "opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "with cosinetui.track(model=m, optimizer=opt, epochs=2) as run:\n"
        "    for e in run.epochs():\n"
        "        run.log_batch(1.0)\n"
        "        raise ValueError('bad batch')\n"
    )
    out = cosinetui("run", str(script), "--headless", cwd=short_dir)
    assert out.returncode == 1
    assert (out.stdout + out.stderr).count("ValueError: bad batch") == 2  # the FAILED line and its traceback
    assert "run fails started" in out.stdout
    assert "resume with: cosinetui resume runs/fails-" in out.stderr
