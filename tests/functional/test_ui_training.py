"""The dashboard on a real (tiny, CPU) training run in a thread: what a user does, end to end."""

from __future__ import annotations

import signal

import pytest
from textual.widgets import Button, Input

from cosinetui import store
from cosinetui.events import CheckpointWritten, Finished, ScheduleChanged
from cosinetui.schedule import CosineSchedule
from cosinetui.session import TrainerSession
from cosinetui.trainer import TrainerOptions
from cosinetui.ui.app import CosineApp
from cosinetui.ui.screens.adjust import ScheduleForm
from cosinetui.ui.screens.confirm import QuitScreen
from tests.functional.conftest_ui import pilot_test, press
from tests.functional.tiny_experiment import experiment

SIZE = (80, 24)


def live_app(tmp_path, epochs: int = 400) -> CosineApp:
    session = TrainerSession(experiment(epochs=epochs), TrainerOptions(run_dir=tmp_path / "run"))
    session.start()
    return CosineApp(session)


async def stop(app: CosineApp, pilot) -> None:
    """Leave the way a user does: q, then confirm; the run checkpoints and the app exits."""
    await press(pilot, "q")
    assert isinstance(app.screen, QuitScreen)
    await press(pilot, "y")
    await app.wait_until(lambda h: h.end is not None)
    await pilot.pause()


@pilot_test
async def test_table_fills_and_pause_stops_the_step_counter(tmp_path):
    app = live_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_until(lambda h: h.epochs_done >= 2)
        await pilot.pause()
        assert app.epoch_table.row_count >= 2
        await press(pilot, "space")
        await app.wait_until(lambda h: h.state == "paused")
        step = app.history.step
        for _ in range(4):  # a few more drains: nothing new arrives while paused
            await app.next_poll()
        assert app.history.step == step
        assert "paused" in str(app.status_line.render())
        await press(pilot, "space")
        await app.wait_until(lambda h: h.step > step)
        await stop(app, pilot)
    assert app.return_value == 0


@pilot_test
async def test_bad_input_changes_nothing_and_apply_changes_the_lrs_used(tmp_path):
    app = live_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_until(lambda h: h.epochs_done >= 1)
        await press(pilot, "p")
        await app.wait_until(lambda h: h.state == "paused")
        await pilot.pause()
        schedule_before = app.history.schedule

        await press(pilot, "a")
        form = app.screen
        assert isinstance(form, ScheduleForm)
        form.query_one("#reanneal-steps", Input).value = "-1"
        await pilot.pause()
        assert form.query_one("#apply", Button).disabled
        await press(pilot, "enter")
        await press(pilot, "escape")
        assert not isinstance(app.screen, ScheduleForm)
        app.poll()
        assert app.history.schedule == schedule_before and not app.history.schedule_changes

        _, planned_before, _, _ = app.lr_plot._data
        await press(pilot, "a")
        form = app.screen
        # Retime: end the cosine a few epochs after the one paused in (under load the pause
        # may land several epochs after the key, and an end in the past is refused).
        end = CosineSchedule.from_state(schedule_before).step + 3
        await press(pilot, "ctrl+o")
        form.query_one("#retime-T_max", Input).value = str(end)
        await pilot.pause()
        assert not form.query_one("#apply", Button).disabled, form.result
        await press(pilot, "enter")
        await app.wait_until(lambda h: len(h.schedule_changes) == 1)
        await pilot.pause()
        change: ScheduleChanged = app.history.schedule_changes[0]
        assert (change.op, change.args) == ("retime", {"T_max": end})
        new = CosineSchedule.from_state(app.history.schedule)
        _, planned, _, _ = app.lr_plot._data
        assert planned.ys != planned_before.ys
        at = {round(x): y for x, y in zip(planned.xs, planned.ys, strict=True)}
        assert at[end] == pytest.approx(new.lr_at(end)[0]) and new.lr_at(end)[0] == 0.0

        changed_at = app.history.step  # batches trained before the change (paused since)
        await press(pilot, "p")  # resume: the optimizer follows the new plan
        spe = app.history.run.steps_per_epoch
        # Two whole epochs after the change (the pause may have come at an epoch's end).
        until = (changed_at // spe + 3) * spe
        await app.wait_until(lambda h: h.epochs_done >= until // spe)
        used = app.history.lrs[changed_at:until]
        expected = [new.lr_at(b // spe)[0] for b in range(changed_at, until)]
        assert list(used) == expected
        assert len({*expected}) >= 2
        await stop(app, pilot)
    assert app.return_value == 0


@pilot_test
async def test_quit_writes_a_checkpoint(tmp_path):
    app = live_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_until(lambda h: h.step >= 3)
        await stop(app, pilot)
    assert app.return_value == 0
    run_dir = tmp_path / "run"
    assert (run_dir / store.CHECKPOINT).exists()
    events = store.read_log(run_dir).events
    end = events[-1]
    assert isinstance(end, Finished) and end.reason == "stopped"
    assert any(isinstance(e, CheckpointWritten) and e.reason == "stop" for e in events)


@pilot_test
async def test_sigterm_checkpoints_and_ends(tmp_path):
    app = live_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_until(lambda h: h.step >= 3)
        app.hang_up(signal.SIGTERM)
        await app.wait_until(lambda h: h.end is not None)
        await pilot.pause()
    assert app.return_value == 0
    events = store.read_log(tmp_path / "run").events
    assert any(isinstance(e, CheckpointWritten) for e in events)
    assert isinstance(events[-1], Finished)
