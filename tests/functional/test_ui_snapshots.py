"""Snapshots (SVG) of the dashboard and the schedule form on deterministic, scripted runs.

Update after an intended change of the look: pytest tests/functional/test_ui_snapshots.py
--snapshot-update, then review the SVGs in __snapshots__/.
"""

from __future__ import annotations

from textual.widgets import Input

from cosinetui.events import SystemSample
from cosinetui.ui.app import CosineApp
from tests.functional.conftest_ui import ScriptedSession, scripted_events

GPU = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "mem_used": 23 << 30,
       "mem_total": 80 << 30, "util": 87, "temp": 64}


def dashboard() -> CosineApp:
    sample = SystemSample(0.0, 104.0, 5 << 30, (GPU,), 19 << 30)
    return CosineApp(ScriptedSession([*scripted_events(), sample]))


async def settle(pilot) -> None:
    pilot.app.poll()
    await pilot.pause()


async def still_cursor(pilot) -> None:
    # A blinking cursor is drawn or not depending on when the frame is taken: hold it still.
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def test_main_screen_80x24(snap_compare):
    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=settle)


def test_main_screen_120x36(snap_compare):
    assert snap_compare(dashboard(), terminal_size=(120, 36), run_before=settle)


def test_schedule_form_80x24(snap_compare):
    async def open_form(pilot) -> None:
        await settle(pilot)
        await pilot.press("a")
        pilot.app.screen.query_one("#reanneal-steps", Input).value = "4"
        await still_cursor(pilot)

    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=open_form)


def test_schedule_form_refusing_input(snap_compare):
    async def bad_input(pilot) -> None:
        await settle(pilot)
        await pilot.press("a", "ctrl+o", "ctrl+o")  # restart
        pilot.app.screen.query_one("#restart-warmup_steps", Input).value = "-2"
        await still_cursor(pilot)

    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=bad_input)


def test_terminal_too_small(snap_compare):
    assert snap_compare(dashboard(), terminal_size=(50, 14), run_before=settle)


def test_quit_dialog_80x24(snap_compare):
    async def quit_dialog(pilot) -> None:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=quit_dialog)


def test_help_screen_80x24(snap_compare):
    async def help_screen(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=help_screen)


def test_schedule_form_warning_of_a_raised_lr(snap_compare):
    async def raise_lr(pilot) -> None:
        await settle(pilot)
        await pilot.press("a")
        pilot.app.screen.query_one("#reanneal-factor", Input).value = "10"
        await still_cursor(pilot)
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=raise_lr)
