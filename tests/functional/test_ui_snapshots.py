"""Snapshots (SVG) of the dashboard and the schedule form on deterministic, scripted runs.

Update after an intended change of the look: pytest tests/functional/test_ui_snapshots.py
--snapshot-update, then review the SVGs in __snapshots__/.
"""

from __future__ import annotations

from textual.widgets import Input

from cosinetui.ui.app import CosineApp
from tests.functional.conftest_ui import ScriptedSession, scripted_events


def dashboard() -> CosineApp:
    return CosineApp(ScriptedSession(scripted_events()))


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
