"""What a new user hit in the dashboard: each test fails without its fix."""

from __future__ import annotations

import dataclasses
import re

import pytest
from textual.widgets import Button, Input, Static

from cosinetui.events import (
    AdjustSchedule,
    ScheduleChanged,
    Stop,
    SystemSample,
)
from cosinetui.schedule import CosineSchedule
from cosinetui.ui import settings
from cosinetui.ui.app import CosineApp, run_dashboard
from cosinetui.ui.screens.adjust import ScheduleForm
from cosinetui.ui.screens.help import AREAS, HelpScreen
from cosinetui.ui.widgets.plots import LossPlot
from cosinetui.ui.widgets.status import StatusLine
from tests.functional.conftest_ui import ScriptedSession, pilot_test, press, scripted_events

SIZE = (80, 24)


def status(app: CosineApp) -> str:
    return str(app.query_one(StatusLine).render())


def notes(app: CosineApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def warm_restart_events(**kwargs):
    """A run of 28 epochs on SGDR cycles of 4, 8 and 16 epochs, 8 epochs done."""
    events = scripted_events(epochs=28, done=8, in_progress=10, alerts=False, **kwargs)
    schedule = CosineSchedule([0.1], T_max=4, eta_min=1e-3, restarts=True, T_mult=2)
    events[0] = dataclasses.replace(events[0], schedule=schedule.state_dict())
    return events


@pilot_test
async def test_reanneal_prefill_is_the_rest_of_the_current_restart_cycle():
    session = ScriptedSession(warm_restart_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await press(pilot, "a")
        form = app.screen
        assert isinstance(form, ScheduleForm)
        # The cycle holding epoch 8 runs from 4 to 12: 4 steps left, as reanneal() defaults to.
        assert form.query_one("#reanneal-steps", Input).value == "4"
        await pilot.press("enter")
        await pilot.pause()
        # Enter applies what reanneal() does with no steps: the same plan as the default.
        assert session.sent == [AdjustSchedule("reanneal", {})]


@pilot_test
async def test_form_warns_when_a_change_raises_the_lr_and_shows_it_in_the_preview():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await press(pilot, "a")
        form = app.screen
        warning = form.query_one("#form-warning", Static)
        assert not warning.display
        form.query_one("#reanneal-factor", Input).value = "10"
        await pilot.pause()
        text = str(warning.render())
        assert warning.display and "raises the LR" in text and "peak" in text
        ceiling = form.query_one("#preview")._data[4]
        assert ceiling == pytest.approx(0.1)  # the run's peak, drawn as a line
        assert not form.query_one("#apply", Button).disabled  # a warning, not a refusal
        form.query_one("#reanneal-factor", Input).value = "2.5"  # below the peak, 2.5x now
        await pilot.pause()
        assert warning.display and "2.5x" in str(warning.render())
        form.query_one("#reanneal-factor", Input).value = "0.5"
        await pilot.pause()
        assert not warning.display and form.query_one("#preview")._data[4] is None


@pilot_test
async def test_screenshot_is_saved_in_the_run_directory_and_says_where(tmp_path):
    events = scripted_events()
    events[0] = dataclasses.replace(events[0], run_dir=str(tmp_path))
    app = CosineApp(ScriptedSession(events))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Screenshot")
        command.callback()
        await pilot.pause()
        saved = list(tmp_path.glob("*.svg"))
        assert len(saved) == 1
        assert any(str(saved[0]) in n for n in notes(app))


class Recorder:
    """Stands in for plotext: records the markers the loss plot draws with."""

    def __init__(self) -> None:
        self.markers: list[str] = []

    def plot(self, xs, ys, marker=None, color=None):
        self.markers.append(marker)

    def scatter(self, xs, ys, marker=None, color=None):
        self.markers.append(marker)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@pilot_test
async def test_loss_series_differ_by_marker_not_colour_alone():
    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        plot = app.query_one(LossPlot)
        for log in (False, True):
            plot.log_scale = log
            recorder = Recorder()
            plot.draw(recorder, plot._data, 60, 12)
            assert len(recorder.markers) == 3 and len(set(recorder.markers)) == 3


@pilot_test
async def test_leaving_prints_where_the_run_is_and_what_comes_next(capsys, monkeypatch):
    events = scripted_events()

    def stopped_run(self, mouse=True):  # the user pressed q then y
        self.history.extend(self.session.drain())
        self.stopping = "stopped"
        self.send(Stop("stopped"))
        self.history.extend(self.session.drain())
        return 0

    monkeypatch.setattr(CosineApp, "run", stopped_run)
    assert run_dashboard(ScriptedSession(events)) == 0
    out = capsys.readouterr().out
    assert "runs/demo-mlp" in out and "cosinetui resume runs/demo-mlp" in out

    def detached(self, mouse=True):
        self.history.extend(self.session.drain())
        self.detached = True
        return -1

    monkeypatch.setattr(CosineApp, "run", detached)
    run_dashboard(ScriptedSession(scripted_events()))
    assert "cosinetui attach runs/demo-mlp" in capsys.readouterr().out


@pilot_test
async def test_attach_does_not_announce_what_happened_before_it():
    events = scripted_events()
    schedule = CosineSchedule([0.1], T_max=20, eta_min=1e-3)
    schedule.step = 5
    old = ScheduleChanged(5, "reanneal", {}, schedule.state_dict(), (0.05,))
    events.insert(12, old)
    session = ScriptedSession(events)
    session.backlog = len(events)  # all of it was in the log when the dashboard attached
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(app.history.schedule_changes) == 1
        assert not any("schedule changed" in n for n in notes(app))
        new = ScheduleChanged(12, "retime", {"T_max": 30}, schedule.state_dict(), (0.04,))
        session.events.put(new)
        app.poll()
        await pilot.pause()
        assert any("schedule changed: retime at step 12" in n for n in notes(app))


@pilot_test
async def test_paused_status_drops_throughput_and_eta_and_shows_the_adjusted_lr():
    session = ScriptedSession(scripted_events())
    app = CosineApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "ETA" in status(app)
        await press(pilot, "space")
        app.poll()
        await pilot.pause()
        line = status(app)
        assert "paused" in line and "ETA" not in line and "/s" not in line
        schedule = CosineSchedule([0.1], T_max=20, eta_min=1e-3)
        schedule.step = 12
        session.events.put(ScheduleChanged(12, "reanneal", {"factor": 0.5}, schedule.state_dict(), (0.0123,)))
        app.poll()
        await pilot.pause()
        assert "lr 1.23e-2" in status(app)


@pilot_test
async def test_palette_has_one_quit_and_the_help():
    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert sum("Quit" in t for t in titles) == 1
        assert titles.count("Screenshot") == 1 and "Keys" in titles


def test_top_level_help_keeps_examples_apart_and_summaries_whole():
    from click.testing import CliRunner

    from cosinetui.cli import main

    out = CliRunner().invoke(main, ["--help"], terminal_width=80).output
    assert "…" not in out and "..." not in out.split("Commands:")[1]
    assert re.search(r"cosinetui run my_experiment\.py {2,}your model", out)
    assert "the most recent one under --root)" in " ".join(out.split())  # a whole sentence


@pilot_test
async def test_help_screen_lists_every_key_by_area_and_escape_closes_it():
    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key in ("question_mark", "f1"):
            await press(pilot, key)
            assert isinstance(app.screen, HelpScreen)
            await press(pilot, "escape")
            assert not isinstance(app.screen, HelpScreen)
    listed = " ".join(keys for _, rows in AREAS for keys, _ in rows).lower()
    names = {"question_mark": "?", "space": "space", "ctrl+c": "ctrl+c", "ctrl+q": "ctrl+q"}
    for binding in CosineApp.BINDINGS:
        for key in binding.key.split(","):
            assert names.get(key, key) in listed, key
    assert [area for area, _ in AREAS][:5] == [
        "Run control", "Schedule", "Plots", "Epoch table", "Warnings' fixes"
    ]


@pilot_test
async def test_the_focused_panel_is_marked():
    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table, alerts = app.epoch_table, app.alerts_panel
        app.set_focus(alerts)
        await pilot.pause()
        unfocused = table.styles.border_top
        app.set_focus(table)
        await pilot.pause()
        assert table.styles.border_top != unfocused


@pilot_test
async def test_the_theme_is_kept_for_the_next_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("COSINETUI_CONFIG_DIR", str(tmp_path))
    app = CosineApp(ScriptedSession(scripted_events()), keep_settings=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.theme = "nord"
        await pilot.pause()
    assert settings.load()["theme"] == "nord"
    again = CosineApp(ScriptedSession(scripted_events()), keep_settings=True)
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == "nord"
    (tmp_path / "settings.json").write_text("{not json")
    third = CosineApp(ScriptedSession(scripted_events()), keep_settings=True)
    async with third.run_test(size=SIZE) as pilot:  # a damaged file means the default
        await pilot.pause()
        assert third.theme == "textual-dark"


GPU = {"index": 0, "name": "NVIDIA H100", "mem_used": 12 << 30, "mem_total": 80 << 30,
       "util": 87, "temp": 64}


@pilot_test
async def test_system_sample_shows_on_the_progress_line_and_in_a_panel_when_wide():
    events = scripted_events()
    events.append(SystemSample(0.0, 101.0, 3 << 30, (GPU, {**GPU, "index": 1}), 9 << 30))
    app = CosineApp(ScriptedSession(events))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        brief = str(app.system_brief.render())
        assert brief.startswith("GPU0 87% 12G/80G 64°C") and "+1" in brief
        assert not app.system_panel.display or app.system_panel.region.width == 0
        version = app.history.version
        session = app.session
        session.events.put(SystemSample(1.0, 99.0, 3 << 30, (), None))
        app.poll()
        await pilot.pause()
        assert app.history.version == version  # not part of the run's history
        assert str(app.system_brief.render()).startswith("CPU 99% RSS 3G")
        await pilot.resize_terminal(130, 36)
        await pilot.pause()
        panel = app.system_panel
        assert panel.region.width > 0 and "trainer CPU 99%" in str(panel.render())
