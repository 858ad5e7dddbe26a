"""The dashboard's trainer child: started without waiting for it, attached once it serves,
and an experiment that cannot start becomes a failure the dashboard shows."""

from __future__ import annotations

from pathlib import Path

from cosinetui.events import Failed, Finished, RunStarted, SystemSample
from cosinetui.trainer_child import TrainerChild

TINY = str(Path(__file__).with_name("tiny_experiment.py"))


def events_until_end(session: TrainerChild, timeout: float = 120.0) -> list:
    import time

    deadline = time.monotonic() + timeout
    events: list = []
    while not any(isinstance(e, (Finished, Failed)) for e in events):
        assert time.monotonic() < deadline, events
        assert session.wait(0.05) or True
        events += [e for e in session.drain() if not isinstance(e, SystemSample)]
    return events


def test_the_child_starts_and_the_session_attaches(tmp_path):
    run = tmp_path / "r"
    session = TrainerChild(["run", TINY, "--epochs", "2", "--run-dir", str(run), "--headless"],
                           run_name="tiny_experiment")
    session.start()  # returns at once: the child is still importing torch
    assert session.drain() == [] and not session.done
    events = events_until_end(session)
    session.close()
    assert isinstance(events[0], RunStarted) and events[0].run_dir == str(run)
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"
    assert session.run_dir == run and session.error is None
    assert session.child.wait(30) == 0
    assert "finished (completed)" in (run / "output.log").read_text()


def test_an_experiment_that_cannot_start_is_a_failure_with_its_message(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('no data here')\n")
    session = TrainerChild(["run", str(bad), "--entry", "experiment", "--headless"], run_name="bad")
    session.start()
    events = events_until_end(session)
    assert isinstance(events[-1], Failed) and "no data here" in events[-1].error
    assert session.exit_status == 2 and "no data here" in session.error
    assert session.done
    assert not (tmp_path / "runs").exists()
