"""`cosinetui show A B`: runs overlaid in the plots, one tab of epochs a run."""

from __future__ import annotations

import dataclasses

from cosinetui.events import BatchChunk, EpochEnd
from cosinetui.ui.compare import CompareApp, Run, loss_overlay, names_for, style_of
from tests.functional.conftest_ui import scripted_events


def variant(scale: float, shift: float, done: int):
    """The scripted run with its losses moved: another run of the same experiment."""
    out = []
    for e in scripted_events(done=done, in_progress=0):
        if isinstance(e, EpochEnd):
            val = None if e.val_loss is None else e.val_loss * scale + shift
            e = dataclasses.replace(e, train_loss=e.train_loss * scale, val_loss=val, lr=e.lr * scale)
        elif isinstance(e, BatchChunk):
            e = dataclasses.replace(e, losses=tuple(x * scale for x in e.losses),
                                    lrs=tuple(x * scale for x in e.lrs))
        out.append(e)
    return out


def compare_app() -> CompareApp:
    return CompareApp([Run.of("baseline", variant(1.0, 0.0, 12)), Run.of("lr-half", variant(0.5, 0.2, 16))])


async def settle(pilot) -> None:
    # The plots are drawn after the first refresh, and a tab's underline slides: let both end.
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def test_compare_80x24(snap_compare):
    assert snap_compare(compare_app(), terminal_size=(80, 24), run_before=settle)


def test_compare_120x36_train_loss_in_second_tab(snap_compare):
    async def switch(pilot) -> None:
        await pilot.press("t")
        pilot.app.query_one("TabbedContent").active = "run-1"
        await settle(pilot)

    assert snap_compare(compare_app(), terminal_size=(120, 36), run_before=switch)


def test_each_run_keeps_its_colour_and_marker():
    styles = [style_of(i) for i in range(8)]
    assert len({s[0] for s in styles}) == 8 and len({s[1] for s in styles}) == 8
    runs = [Run.of("a", variant(1.0, 0.0, 12)), Run.of("b", variant(0.5, 0.2, 16))]
    val = loss_overlay(runs, "val", 40)
    assert [len(s.xs) for s in val] == [12, 16]
    assert val[1].ys[0] == runs[1].history.epochs[0].val_loss


def test_repeated_names_fall_back_to_paths():
    runs = [Run.of("x", variant(1.0, 0.0, 2)), Run.of("y", variant(1.0, 0.0, 2)), Run.of("x", variant(1.0, 0.0, 2))]
    assert names_for(["runs/a", "runs/b", "runs/c"], runs) == ["runs/a", "y", "runs/c"]
