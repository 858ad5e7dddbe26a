"""The dashboard driven by Textual's Pilot on scripted, deterministic events."""

from __future__ import annotations

import signal

import pytest
from textual.app import App
from textual.widgets import Button, Input, Static

from cosinetui.events import (
    AdjustSchedule,
    Alert,
    BatchChunk,
    CommandRefused,
    EpochEnd,
    Finished,
    Pause,
    Resume,
    RunStarted,
    SaveCheckpoint,
    ScheduleChanged,
    Stop,
    to_json,
)
from cosinetui.history import History
from cosinetui.schedule import CosineSchedule
from cosinetui.session import DETACHED, ReplaySession
from cosinetui.ui.app import PLOT_SECONDS, CosineApp
from cosinetui.ui.screens.adjust import ScheduleForm
from cosinetui.ui.screens.confirm import QuitScreen, RestartScreen
from cosinetui.ui.widgets.alerts import FIX_KEYS
from cosinetui.ui.widgets.epoch_table import EpochTable
from cosinetui.ui.widgets.plots import LossPlot, LRPlot
from cosinetui.ui.widgets.status import StatusLine
from tests.functional.conftest_ui import ScriptedSession, pilot_test, scripted_events

SIZE = (80, 24)


def status(app: CosineApp) -> str:
    return str(app.query_one(StatusLine).render())


@pilot_test
async def test_main_screen_shows_the_run():
    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.query_one(EpochTable)
        assert table.row_count == 12
        assert table.best_row == 8  # epoch 9 has the lowest val loss
        assert table.cell(8, 2).endswith("*") and "*" not in table.cell(7, 2)
        line = status(app)
        for part in ("demo-mlp", "running", "epoch 13/20", "lr 3.52e-2", "ETA"):
            assert part in line
        assert app.query_one(LossPlot).builds == 1
        assert app.query_one(LRPlot).builds == 1


@pilot_test
async def test_plots_do_not_rebuild_without_new_data():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        loss, lr = app.query_one(LossPlot), app.query_one(LRPlot)
        builds = loss.builds, lr.builds
        for _ in range(5):
            app.poll()
            loss.refresh()
            lr.refresh()
            await pilot.pause()
        assert (loss.builds, lr.builds) == builds
        await pilot.press("l")  # log scale is new data for the loss plot only
        await pilot.pause()
        assert loss.builds == builds[0] + 1 and lr.builds == builds[1]
        await pilot.resize_terminal(100, 30)  # a new size redraws both
        await pilot.pause()
        app.poll()
        await pilot.pause()
        assert loss.builds > builds[0] + 1 and lr.builds > builds[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chunk_after(history: History, count: int = 5) -> BatchChunk:
    """The next ``count`` batches of the epoch in progress."""
    epoch = history.epochs_done + 1
    lr = history.lrs[-1]
    return BatchChunk(
        epoch, history.step, (0.5,) * count, (lr,) * count, history.batches_in_epoch + count
    )


async def feed(app: CosineApp, pilot, event) -> None:
    app.session.events.put(event)
    app.poll()
    await pilot.pause()


@pilot_test
async def test_plots_redraw_at_most_once_a_second_within_an_epoch():
    app = CosineApp(ScriptedSession(scripted_events()))
    clock = app.clock = FakeClock()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.poll_timer.pause()  # the test polls: one poll per step below
        loss, lr = app.query_one(LossPlot), app.query_one(LRPlot)
        builds = loss.builds, lr.builds
        assert builds == (1, 1)
        for _ in range(4):  # 8 Hz chunks for half a second: the plots wait
            clock.now += 0.125
            await feed(app, pilot, chunk_after(app.history))
        assert app.history.batches_in_epoch == 50  # 30 + 4 x 5
        assert (loss.builds, lr.builds) == builds
        assert "50/50" in str(app.progress.query_one("#epoch-label").render())
        clock.now += PLOT_SECONDS  # a second on: the batches drawn since come in one rebuild
        app.poll()
        await pilot.pause()
        assert loss.builds == builds[0] + 1
        assert loss._data.batch.xs[-1] == pytest.approx(13.0)  # x of batch 50 of epoch 13
        builds = loss.builds, lr.builds
        history = app.history  # an epoch end is drawn at once, whatever the clock,
        await feed(app, pilot, EpochEnd(13, 0.5, 0.6, history.lrs[-1], 4.0, 3200.0, history.step))
        assert (loss.builds - builds[0]) + (lr.builds - builds[1]) == 1
        app.poll()  # one plot a frame: the other one on the next poll, with no new event
        await pilot.pause()
        assert loss.builds == builds[0] + 1 and lr.builds == builds[1] + 1
        app.poll()
        await pilot.pause()
        assert loss.builds == builds[0] + 1 and lr.builds == builds[1] + 1


@pilot_test
async def test_epochs_faster_than_the_polls_redraw_both_plots_in_turn():
    """An epoch on every poll: the loss plot wants a rebuild each time, yet the LR plot is
    not starved, and a schedule change puts the LR plot first."""
    app = CosineApp(ScriptedSession(scripted_events(in_progress=0)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.poll_timer.pause()
        loss, lr = app.query_one(LossPlot), app.query_one(LRPlot)
        builds = loss.builds, lr.builds
        for _ in range(6):
            history = app.history
            epoch = history.epochs_done + 1
            lr_now = history.lrs[-1] * 0.8
            app.session.events.put(BatchChunk(epoch, history.step, (0.5,) * 50, (lr_now,) * 50, 50))
            step = history.step + 50
            await feed(app, pilot, EpochEnd(epoch, 0.5, 0.6, lr_now, 4.0, 3200.0, step))
        assert loss.builds - builds[0] >= 3 and lr.builds - builds[1] >= 3
        builds = loss.builds, lr.builds
        history = app.history
        change = ScheduleChanged(history.epochs_done, "reanneal", {"steps": 4}, history.schedule)
        await feed(app, pilot, change)
        assert lr.builds == builds[1] + 1


@pilot_test
async def test_lr_plot_of_a_long_per_epoch_schedule_keeps_its_picture_within_an_epoch():
    # 400 epochs on ~38 columns: a braille dot spans several epochs, and the LR of an epoch
    # is constant, so batches within an epoch cannot change the LR picture.
    app = CosineApp(ScriptedSession(scripted_events(epochs=400, in_progress=5, alerts=False)))
    clock = app.clock = FakeClock()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        loss, lr = app.query_one(LossPlot), app.query_one(LRPlot)
        builds = loss.builds, lr.builds
        for _ in range(9):  # slow chunks: every poll may redraw
            clock.now += PLOT_SECONDS
            await feed(app, pilot, chunk_after(app.history))
        assert app.history.batches_in_epoch == 50
        assert loss.builds > builds[0]
        assert lr.builds == builds[1]


@pilot_test
async def test_pause_and_resume_keys():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("space")
        await app.wait_until(lambda h: h.state == "paused", timeout=5)
        assert session.sent == [Pause()]
        assert "paused" in status(app)
        assert app.active_bindings["space"].binding.id == "resume"
        await pilot.press("p")
        await app.wait_until(lambda h: h.state == "running", timeout=5)
        assert session.sent == [Pause(), Resume()]
        await pilot.press("s")
        assert session.sent[-1] == SaveCheckpoint()


@pilot_test
async def test_form_refuses_bad_input_and_escape_changes_nothing():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        before = dict(app.history.schedule)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, ScheduleForm)
        steps = form.query_one("#reanneal-steps", Input)
        assert steps.value == "8"  # the rest of the cosine: 20 epochs, 12 done
        apply = form.query_one("#apply", Button)
        assert not apply.disabled
        for text, message in [
            ("abc", "steps must be a number, got 'abc'"),
            ("-3", "steps must be an integer >= 1, got -3"),
            ("2.5", "steps must be an integer >= 1, got 2.5"),
        ]:
            steps.value = text
            await pilot.pause()
            assert str(form.query_one("#reanneal-steps-error", Static).render()) == message
            assert apply.disabled
            assert steps.has_class("-invalid")
        steps.value = "8"
        eta = form.query_one("#reanneal-eta_min", Input)
        eta.value = "50"
        await pilot.pause()
        assert "eta_min must lie in" in str(
            form.query_one("#reanneal-eta_min-error", Static).render()
        )
        assert apply.disabled
        await pilot.press("enter")  # refused while invalid
        assert app.screen is form
        await pilot.press("escape")
        assert not isinstance(app.screen, ScheduleForm)
        assert session.sent == []
        assert app.history.schedule == before


@pilot_test
async def test_form_preview_and_apply_sends_the_command():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("a")
        form = app.screen
        form.query_one("#reanneal-steps", Input).value = "4"
        await pilot.pause()
        old, new, now, _, _ = form.query_one("#preview")._data
        assert now == 12
        assert new.ys[0] == pytest.approx(old.ys[0]) and new.ys[-1] == pytest.approx(1e-3)
        assert new.xs[new.ys.index(min(new.ys))] <= 16  # reaches the floor 4 epochs from now
        await pilot.press("ctrl+o")  # retime
        assert form.op == "retime"
        form.query_one("#retime-T_max", Input).value = "30"
        await pilot.pause()
        await pilot.click("#apply")
        await pilot.pause()
        assert session.sent == [AdjustSchedule("retime", {"T_max": 30})]


@pilot_test
async def test_implicit_fields_are_not_sent():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("a")
        app.screen.query_one("#reanneal-factor", Input).value = "0.5"
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert session.sent == [AdjustSchedule("reanneal", {"factor": 0.5})]


@pilot_test
async def test_schedule_change_moves_the_planned_curve_and_refusals_show():
    state = {}

    def respond(command, session):
        if isinstance(command, AdjustSchedule):
            schedule = CosineSchedule.from_state(state["schedule"])
            schedule.step = 12
            schedule.apply(command.op, command.args)
            return [ScheduleChanged(12, command.op, command.args, schedule.state_dict())]
        return [CommandRefused(to_json(command), "not now")]

    session = ScriptedSession(scripted_events(), respond)
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        state["schedule"] = app.history.schedule
        plot = app.query_one(LRPlot)
        _, planned_before, _, _ = plot._data
        await pilot.press("a")
        app.screen.query_one("#reanneal-steps", Input).value = "2"
        await pilot.pause()
        await pilot.press("enter")
        await app.wait_until(lambda h: len(h.schedule_changes) == 1, timeout=5)
        await pilot.pause()
        _, planned, _, _ = plot._data
        assert planned.ys[0] == pytest.approx(planned_before.ys[0])
        assert min(planned.ys) == pytest.approx(1e-3)
        assert planned.xs[planned.ys.index(min(planned.ys))] == 14  # floor 2 epochs from now
        await pilot.press("s")
        await app.wait_until(lambda h: len(h.refusals) == 1, timeout=5)
        await pilot.pause()
        assert any("not now" in str(n.message) for n in app._notifications)


@pilot_test
async def test_alert_fix_key_opens_the_form_prefilled():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        panel_text = " ".join(str(s.render()) for s in app.query(".alert"))
        assert "h  halve the LR" in panel_text and "w  warm restart" in panel_text
        await pilot.press("h")
        form = app.screen
        assert isinstance(form, ScheduleForm) and form.op == "reanneal"
        assert form.query_one("#reanneal-factor", Input).value == "0.5"
        await pilot.press("enter")
        await pilot.pause()
        assert session.sent == [AdjustSchedule("reanneal", {"factor": 0.5})]


@pilot_test
async def test_warm_restart_asks_first():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert isinstance(app.screen, RestartScreen)
        await pilot.press("escape")
        assert session.sent == []
        await pilot.press("r")
        await pilot.press("y")
        await pilot.pause()
        assert session.sent == [AdjustSchedule("restart", {"steps": 8})]


@pilot_test
async def test_read_only_session_disables_the_controls():
    app = CosineApp(ReplaySession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key in ("space", "a", "r", "s", "h"):
            await pilot.press(key)
            assert not isinstance(app.screen, (ScheduleForm, RestartScreen))
        assert app.history.refusals == []  # nothing was even sent
        footer_ids = {b.binding.id for b in app.active_bindings.values() if b.enabled}
        assert "pause" not in footer_ids and "adjust" not in footer_ids
        await pilot.press("q")  # a recorded run quits without asking
    assert app.return_value == 0


@pytest.mark.parametrize("keys", [("q", "y"), ("ctrl+c", "ctrl+c"), ("q", "enter")])
@pilot_test
async def test_quit_stops_the_run_and_exits(keys):
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(keys[0])
        assert isinstance(app.screen, QuitScreen)
        await pilot.press(keys[1])
        await app.wait_until(lambda h: h.end is not None, timeout=5)
        await pilot.pause()
    assert session.sent == [Stop("stopped")]
    assert app.return_value == 0


@pilot_test
async def test_quit_cancel_keeps_running():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.press("escape")
        assert not isinstance(app.screen, QuitScreen)
        assert session.sent == []
        assert app.is_running


@pilot_test
async def test_sigterm_stops_with_a_checkpoint_reason():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.hang_up(signal.SIGTERM)
        await app.wait_until(lambda h: h.end is not None, timeout=5)
        await pilot.pause()
    assert session.sent == [Stop("signal")]
    assert app.return_value == 0


@pilot_test
async def test_hang_up_detaches_and_leaves_the_run_training():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.hang_up(signal.SIGHUP)
        await pilot.pause()
    assert session.sent == [SaveCheckpoint()]  # a fresh restart point, no Stop
    assert app.detached and app.return_value == DETACHED


@pytest.mark.parametrize("keys", [("d",), ("q", "d")])
@pilot_test
async def test_detach_key_and_quit_dialog_detach(keys):
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
    assert session.sent == [SaveCheckpoint()]
    assert app.return_value == DETACHED


@pilot_test
async def test_attached_dashboard_quits_by_detaching_by_default():
    session = ScriptedSession(scripted_events())
    session.owns_run = False  # another process's run, as over the control socket
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen) and app.screen.attached
        await pilot.press("enter")
        await pilot.pause()
    assert session.sent == [] and app.return_value == DETACHED


@pilot_test
async def test_failed_run_exits_with_1():
    from cosinetui.events import Failed

    app = CosineApp(ReplaySession([*scripted_events(), Failed(13, 630, "boom")]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "failed" in status(app)
        await pilot.press("q")
    assert app.return_value == 1


@pilot_test
async def test_terminal_too_small_says_so():
    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=(50, 15)) as pilot:
        await pilot.pause()
        message = app.query_one("#too-small", Static)
        assert message.display and not app.query_one("#dashboard").display
        assert "terminal too small (need 60x20)" in str(message.render())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not message.display and app.query_one("#dashboard").display


@pilot_test
async def test_finished_run_quits_at_once():
    events = [*scripted_events(in_progress=0, done=20), Finished(20, 1000, "completed", 0.4)]
    app = CosineApp(ReplaySession(events))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "finished" in status(app)
        assert app.query_one(EpochTable).row_count == 20
        await pilot.press("q")
    assert app.return_value == 0


def test_big_run_draws_decimated_plots_and_the_whole_table():
    """10k epochs and 1M batch LRs: both plots draw, the table holds every epoch.
    (The frame time is measured by benchmarks/render.py, not asserted here.)"""
    import asyncio

    history = History.from_events(
        scripted_events(
            epochs=10_000, done=10_000, steps_per_epoch=100, in_progress=0, alerts=False
        )
    )
    assert history.step == 1_000_000

    async def run():
        app = CosineApp(ReplaySession([]))
        app.history = history
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.poll()
            await pilot.pause()
            loss, lr = app.query_one(LossPlot), app.query_one(LRPlot)
            loss.invalidate()  # as if new data changed both pictures
            lr.invalidate()
            loss.update_from(history)
            lr.update_from(history)
            drawn = (str(loss.render()), str(lr.render()))
            table = app.query_one(EpochTable)
            last = table.cell(table.row_count - 1, 0)
            return loss.builds, lr.builds, drawn, table.row_count, last

    loss_builds, lr_builds, drawn, rows, last = asyncio.run(run())
    assert loss_builds >= 2 and lr_builds >= 2
    assert all(drawn)
    assert rows == 10_000 and last == "10000"


@pilot_test
async def test_palette_lists_the_actions_that_apply():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Pause training" in titles and "Adjust the schedule" in titles
        assert "Resume training" not in titles
        command = next(
            c for c in app.get_system_commands(app.screen) if c.title == "Pause training"
        )
        await command.callback()
        assert session.sent == [Pause()]


@pilot_test
async def test_table_follows_the_newest_row_unless_scrolled_up():
    events = scripted_events(epochs=60, done=40, in_progress=0, alerts=False)
    more = scripted_events(epochs=60, done=50, in_progress=0, alerts=False)
    session = ScriptedSession(events)
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.epoch_table
        await pilot.pause()
        assert table.is_vertical_scroll_end and table.max_scroll_y > 0
        for event in more[len(events) : len(events) + 6]:  # epochs 41-43 arrive
            session.events.put(event)
        app.poll()
        await pilot.pause()
        assert table.row_count == 43 and table.is_vertical_scroll_end
        table.scroll_to(y=0, animate=False)
        await pilot.pause()
        for event in more[len(events) + 6 :]:
            session.events.put(event)
        app.poll()
        await pilot.pause()
        assert table.row_count == 50 and table.scroll_y == 0


@pilot_test
async def test_sigterm_to_an_attached_dashboard_leaves_the_run_alone():
    session = ScriptedSession(scripted_events())
    session.owns_run = False  # another process's run
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.hang_up(signal.SIGTERM)
        await pilot.pause()
    assert session.sent == [] and app.return_value == DETACHED


class TableApp(App):
    """The epoch table alone, fed by the tests."""

    def compose(self):
        yield EpochTable()


def run_started(start_epoch: int = 0) -> RunStarted:
    return RunStarted("t", "/tmp/t", "cpu", "x", 1, 500, 10, "epoch", {}, start_epoch=start_epoch)


def table_history(epochs: int) -> History:
    """A run with ``epochs`` epochs, each val loss lower than the last."""
    history = History()
    history.apply(run_started())
    for e in range(1, epochs + 1):
        history.apply(EpochEnd(e, 1.0 / e, 1.0 / e, 0.1, 2.0, 10.0, e * 10))
    return history


@pilot_test
async def test_epoch_table_marks_the_best_val_adds_metric_columns_and_rebuilds_on_resume():
    history = History()
    history.apply(run_started())
    history.extend([EpochEnd(1, 1.0, 0.9, 0.1, 2.0, 10.0, 10), EpochEnd(2, 0.8, 0.7, 0.1, 2.0, 10.0, 20)])
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(EpochTable)
        table.update_from(history)
        await pilot.pause()

        def line(y: int) -> str:
            return table.render_line(y).text.rstrip()

        assert line(0).split() == ["ep", "train", "val", "lr", "time"]
        assert table.best_row == 1 and line(2).split()[:3] == ["2", "0.8", "0.7"]
        assert "*" in line(2) and "*" not in line(1)
        # A better val moves the marker; a metric appears from epoch 3 on.
        history.apply(EpochEnd(3, 0.6, 0.5, 0.1, 2.0, 10.0, 30, metrics={"acc": 0.9}))
        table.update_from(history)
        await pilot.pause()
        assert table.columns[-1] == "acc" and line(0).split()[-1] == "acc"
        assert table.best_row == 2 and "*" in line(3) and "*" not in line(2)
        assert line(3).split()[-1] == "0.9" and table.cell(0, 5) == ""
        # A resume from the epoch-1 checkpoint: the table shows what the history holds.
        history.apply(run_started(start_epoch=1))
        history.apply(EpochEnd(2, 0.75, 0.95, 0.1, 2.0, 10.0, 20))
        table.update_from(history)
        await pilot.pause()
        assert table.row_count == 2 and table.columns == ["ep", "train", "val", "lr", "time"]
        assert table.best_row == 0 and line(2).split()[:3] == ["2", "0.75", "0.95"]


@pilot_test
async def test_the_startup_heap_is_frozen_while_the_dashboard_runs():
    """Full collections skip what existed at startup (torch, Textual) while the app runs, and
    the process collects as usual once it has left."""
    import gc

    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.pause()
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


@pilot_test
async def test_a_host_programs_own_gc_freeze_is_left_alone():
    import gc

    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        app = CosineApp(ScriptedSession(scripted_events()))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.pause()
        assert gc.get_freeze_count() > frozen // 2 > 0  # still frozen (less what has died)
    finally:
        gc.unfreeze()


@pilot_test
async def test_epoch_table_follows_through_end_resize_and_pages_without_skipping_rows():
    history = table_history(40)
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(EpochTable)
        table.update_from(history)
        await pilot.pause()
        assert table.is_vertical_scroll_end
        # Paging from the top shows every epoch (the header is not counted as a row).
        table.scroll_home(animate=False)
        await pilot.pause()
        seen: set[str] = set()
        for _ in range(12):
            seen.update(table.render_line(y).text.split()[0] for y in range(1, table.size.height))
            table.action_page_down()
            await pilot.pause(0.2)
        assert {str(e) for e in range(1, 41)} <= seen
        # Scrolled up: new rows do not move the view.
        table.scroll_home(animate=False)
        await pilot.pause()
        history.apply(EpochEnd(41, 0.01, 0.01, 0.1, 2.0, 10.0, 410))
        table.update_from(history)
        await pilot.pause()
        assert table.scroll_y == 0
        # End (animated), and a row lands while it scrolls: the view ends on the newest row.
        table.action_scroll_end()
        await pilot.pause(0.05)
        history.apply(EpochEnd(42, 0.01, 0.01, 0.1, 2.0, 10.0, 420))
        table.update_from(history)
        await pilot.pause(1.5)
        assert table.is_vertical_scroll_end and table.scroll_y == table.max_scroll_y
        # A smaller window while following keeps the newest row in view.
        await pilot.resize_terminal(60, 9)
        await pilot.pause()
        assert table.is_vertical_scroll_end
        assert table.render_line(table.size.height - 1).text.split()[0] == "42"


@pilot_test
async def test_epoch_table_empties_when_a_resume_goes_back_to_no_epochs():
    history = table_history(30)
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(EpochTable)
        table.update_from(history)
        await pilot.pause()
        history.apply(run_started(start_epoch=0))
        table.update_from(history)
        await pilot.pause()
        assert table.row_count == 0 and table.virtual_size.height == 1
        assert table.render_line(1).text.strip() == "" and not table.show_vertical_scrollbar


def _footer_keys(app) -> set[str]:
    """The keys the footer shows now (Textual hides bindings check_action refuses)."""
    return {b.key for _, b, enabled, _ in app.active_bindings.values() if b.show and enabled}


@pilot_test
async def test_fix_keys_are_in_the_footer_and_shown_once():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert {"h", "w"} <= _footer_keys(app) and not {"n", "e", "c"} & _footer_keys(app)
        texts = [str(s.render()) for s in app.query(".alert")]
        # The key once, as the panel's badge; never again inside the suggestion.
        assert any(t.endswith(" h  halve the LR") for t in texts), texts
        assert not any("h: " in t or t.count(" h ") > 1 for t in texts), texts


@pilot_test
async def test_a_legacy_key_prefix_in_a_logged_suggestion_is_not_repeated():
    old = Alert("nan", "critical", 3, "train loss is not a number", "h: halve the LR", None,
                {"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}, "nan:3")
    app = CosineApp(ScriptedSession([*scripted_events(alerts=False), old]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        (text,) = [str(s.render()) for s in app.query(".alert")]
        assert text.endswith(" h  halve the LR") and "h: " not in text


@pilot_test
async def test_a_finished_run_shows_no_fix_keys():
    app = CosineApp(ReplaySession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        texts = [str(s.render()) for s in app.query(".alert")]
        assert len(texts) == 2 and any("halve the LR" in t for t in texts)
        assert not any(" h  " in t or " w  " in t for t in texts), texts
        assert not set(FIX_KEYS) & _footer_keys(app)
        await pilot.press("h")
        assert not isinstance(app.screen, ScheduleForm)
