"""The dashboard's per-batch scalars: the gradient norm in place of the LR plot (g), the epoch
means as table columns, and best.pt named under the table."""

from __future__ import annotations

import dataclasses
import math

from cosinetui.events import BatchChunk, CheckpointWritten, EpochEnd
from cosinetui.history import Series
from cosinetui.ui.app import CosineApp
from cosinetui.ui.widgets.epoch_table import EpochTable
from cosinetui.ui.widgets.plots import LRPlot
from tests.functional.conftest_ui import ScriptedSession, pilot_test, press, scripted_events

SIZE = (80, 24)


def with_grad_norms(events):
    """The scripted run as a max_grad_norm run records it: a norm every other batch (the
    optimizer steps of accumulate=2), their epoch means, best.pt after each better val."""
    out, best = [], math.inf
    for event in events:
        if isinstance(event, BatchChunk):
            norms = [1.0 + 0.1 * ((event.first_step + i) % 7) if i % 2 else math.nan for i in range(len(event.losses))]
            event = dataclasses.replace(event, scalars={"grad_norm": norms})
        elif isinstance(event, EpochEnd):
            event = dataclasses.replace(event, train_metrics={"grad_norm": 1.3})
        out.append(event)
        if isinstance(event, EpochEnd) and event.val_loss < best:
            best = event.val_loss
            out.append(CheckpointWritten("runs/demo-mlp/best.pt", event.epoch, event.step, "best"))
    return out


@pilot_test
async def test_g_shows_the_grad_norm_in_place_of_the_lr_plot_and_back():
    app = CosineApp(ScriptedSession(with_grad_norms(scripted_events())))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        plot = app.query_one(LRPlot)
        assert plot.border_title.startswith("LR ") and app.check_action("grad_norm", ())
        builds = plot.builds
        await press(pilot, "g")
        await pilot.pause()
        assert plot.grad_norm and plot.border_title.startswith("grad norm")
        assert isinstance(plot._data, Series) and plot._data.xs and plot.builds == builds + 1
        assert min(plot._data.ys) >= 1.0 and max(plot._data.ys) <= 1.6  # the norms, not the LR
        assert max(plot._data.xs) <= 13  # x in epochs, as the LR plot's
        await press(pilot, "g")
        await pilot.pause()
        assert not plot.grad_norm and plot.border_title.startswith("LR ") and not isinstance(plot._data, Series)


@pilot_test
async def test_the_table_shows_epoch_means_and_names_best_pt():
    app = CosineApp(ScriptedSession(with_grad_norms(scripted_events())))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.query_one(EpochTable)
        assert table.columns[-2:] == ["acc", "grad_norm"]
        assert table.cell(0, table.columns.index("grad_norm")) == "1.3"
        assert table.border_subtitle.startswith(f"* best.pt: epoch {table.best_row + 1}")


@pilot_test
async def test_a_narrow_table_says_how_many_columns_lie_to_the_right():
    app = CosineApp(ScriptedSession(with_grad_norms(scripted_events())))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.query_one(EpochTable)
        hidden = table.border_subtitle.split(" · ")[-1]
        assert hidden.startswith("→ ") and "more column" in hidden  # 80 columns: not all fit
        assert app.focused is table  # the table has the focus at start: the arrows scroll it
        for _ in range(table.max_scroll_x):
            await press(pilot, "right")
        await pilot.pause()
        assert table.scroll_x == table.max_scroll_x
        assert "more column" not in table.border_subtitle  # scrolled to the right edge
    app = CosineApp(ScriptedSession(with_grad_norms(scripted_events())))
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        assert "more column" not in app.query_one(EpochTable).border_subtitle


@pilot_test
async def test_a_run_without_grad_norms_does_not_offer_g():
    app = CosineApp(ScriptedSession(scripted_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not app.check_action("grad_norm", ())
        assert app.query_one(EpochTable).border_subtitle == ""
