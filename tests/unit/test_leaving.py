"""What the terminal says once the dashboard is gone, for each way a run can be left."""

from cosinetui.events import CheckpointWritten, EpochEnd, Failed, Finished, RunStarted
from cosinetui.history import History
from cosinetui.leaving import leaving_lines


def history(*events, loop: str = "experiment") -> History:
    start = RunStarted("mlp", "runs/mlp-1", "cpu", "2", 10, 10, 5, "epoch", {}, loop=loop)
    epochs = [EpochEnd(e, 1.0 / e, 1.2 / e, 0.1, 1.0, 10.0, 5 * e) for e in (1, 2, 3)]
    return History.from_events([start, *epochs, *events])


def test_detached_or_attached_run_points_to_attach():
    lines = leaving_lines(history(), running=True, pid=42)
    assert "pid 42" in lines[0] and "epoch 3/10" in lines[0]
    assert lines[1].split() == ["watch", "and", "steer:", "cosinetui", "attach", "runs/mlp-1"]


def test_stopped_run_points_to_resume():
    lines = leaving_lines(history(Finished(3, 15, "stopped")), running=False)
    assert "stopped at epoch 3/10" in lines[0] and "runs/mlp-1" in lines[0]
    assert lines[-1].split()[-3:] == ["cosinetui", "resume", "runs/mlp-1"]


def test_finished_run_gives_the_summary():
    lines = leaving_lines(history(Finished(3, 15, "completed", 0.4)), running=True)
    assert lines[0].startswith("mlp finished: 3 epochs, 15 steps; best val 0.4 at epoch 3")
    assert any("cosinetui show runs/mlp-1" in line for line in lines)
    assert any("--epochs" in line for line in lines)


def test_a_finished_script_is_extended_in_the_script_not_with_epochs():
    # --epochs is refused for a script: its track() call sets the length.
    lines = leaving_lines(history(Finished(3, 15, "completed", 0.4), loop="track"), running=False)
    further = next(line for line in lines if "train further" in line)
    assert "--epochs" not in further and "track()" in further
    assert further.endswith("cosinetui resume runs/mlp-1")


def test_failed_run_says_why_and_resumes_only_from_a_checkpoint():
    failed = Failed(3, 15, "RuntimeError: boom")
    assert "RuntimeError: boom" in leaving_lines(history(failed), running=False)[0]
    assert not any("resume" in line for line in leaving_lines(history(failed), running=False))
    with_checkpoint = history(CheckpointWritten("runs/mlp-1/checkpoint.pt", 3, 15), failed)
    assert any("cosinetui resume" in line for line in leaving_lines(with_checkpoint, running=False))


def test_nothing_to_say_without_a_run():
    assert leaving_lines(History(), running=False) == []


def test_leaving_before_the_trainer_is_up_says_how_to_find_the_run():
    lines = leaving_lines(History(), running=True, pid=7)
    assert "pid 7" in lines[0] and "cosinetui ls" in lines[1]
