"""The dashboard's pure helpers: plot data, decimation summary, form checks, formats."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosinetui.history import History, decimate
from cosinetui.ui import schedule_view
from cosinetui.ui.format import fmt_duration, fmt_loss, fmt_lr, fmt_number, fmt_rate
from cosinetui.ui.series import (
    Axis,
    Envelope,
    EpochEnvelopes,
    loss_series,
    nice_ticks,
    sample_steps,
)
from cosinetui.ui.widgets.alerts import assign_keys, fix_key
from tests.functional.conftest_ui import scripted_events

values = st.lists(
    st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf)), max_size=3000
)


@settings(max_examples=60, deadline=None)
@given(values, st.integers(1, 40), st.integers(0, 5))
def test_envelope_keeps_every_bucket_extreme(ys, buckets, grow_in):
    """Grown in pieces, the summary gives the same extremes as decimating the whole buffer."""
    buf, env = array("d"), Envelope()
    cut = len(ys) // (grow_in + 1) if grow_in else len(ys)
    for start in range(0, len(ys), max(cut, 1)):
        buf.extend(ys[start : start + max(cut, 1)])
        env.update(buf)
    env.update(buf)
    got = env.series(buf, buckets)
    want = decimate(buf, buckets)
    finite = [y for y in buf if math.isfinite(y)]
    assert len(got.xs) <= 2 * buckets + 2 * env.block or len(got.xs) == len(want.xs)
    assert got.xs == sorted(got.xs)
    if finite:
        assert min(got.ys) == min(finite) and max(got.ys) == max(finite)
    else:
        assert got.ys == []
    for x, y in zip(got.xs, got.ys, strict=True):
        assert buf[int(x)] == y


def test_envelope_resets_when_the_buffer_shrinks():
    env = Envelope()
    env.update(array("d", range(1000)))
    env.update(array("d", [5.0] * 10))
    assert env.series(array("d", [5.0] * 10), 10).ys == [5.0] * 10


def test_envelope_sees_a_replaced_last_value_at_a_block_boundary():
    env = Envelope(block=4)
    buf = array("d", [1.0] * 8)
    env.update(buf)
    buf[7] = 9.0  # same length, the last full block changed
    env.update(buf)
    assert max(env.series(buf, 1).ys) == 9.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=1500), st.integers(5, 60))
def test_loss_series_with_envelopes_keeps_the_extremes_of_the_plain_one(trains, buckets):
    """Fed epoch by epoch, the incremental epoch curves keep the same extremes, x order and
    points of the run as decimating every epoch record again."""
    from cosinetui.events import EpochEnd, RunStarted

    history = History()
    history.apply(RunStarted("t", "/tmp/t", "cpu", "x", len(trains), len(trains), 10, "epoch", None))
    envelopes = EpochEnvelopes()
    for epoch, train in enumerate(trains, 1):
        history.apply(EpochEnd(epoch, train, train * 1.5, 0.1, 1.0, 10.0, epoch * 10))
        if epoch % 97 == 0:
            loss_series(history, buckets, envelopes)
    got, want = loss_series(history, buckets, envelopes), loss_series(history, buckets)
    for a, b in ((got.train, want.train), (got.val, want.val)):
        assert min(a.ys) == min(b.ys) and max(a.ys) == max(b.ys)
        assert a.xs == sorted(a.xs) and a.xs[0] >= 1
        scale = 1.5 if a is got.val else 1
        assert all(trains[int(x) - 1] * scale == y for x, y in zip(a.xs, a.ys, strict=True))


def test_sample_steps_keeps_ends_and_corners():
    steps = sample_steps(0, 10_000, 50, extra=[1234])
    assert steps[0] == 0 and steps[-1] == 10_000 and {1233, 1234} <= set(steps)
    assert len(steps) < 60
    assert sample_steps(3, 7, 50) == [3, 4, 5, 6, 7]


def test_nice_ticks():
    assert nice_ticks(0, 20, 5) == [0, 5, 10, 15, 20]
    assert nice_ticks(1, 2.5, 4, integer=True) == [1, 2]
    assert all(0.0012 <= t <= 0.0033 for t in nice_ticks(0.0012, 0.0033, 4))


def test_axis_converts_steps_to_epochs():
    history = History.from_events(scripted_events(interval="batch"))
    axis = Axis.of(history)
    assert axis.sched_x(125) == 2.5 and axis.sched_end == 1000
    assert axis.sched_now(history) == history.step


def test_prefills_and_checks_follow_the_schedule():
    history = History.from_events(scripted_events())
    schedule = schedule_view.load(history)
    assert schedule.step == 12
    fills = schedule_view.prefills(schedule, Axis.of(history))
    assert fills["reanneal"]["steps"].text == "8" and fills["retime"]["T_max"].text == "20"
    ok = schedule_view.check(schedule, "retime", {"T_max": "30"}, set())
    assert ok.ok and ok.args == {"T_max": 30} and ok.preview.end_step == 30
    assert schedule.end_step == 20  # checked on a copy
    bad = schedule_view.check(schedule, "retime", {"T_max": "5"}, set())
    assert not bad.ok and bad.errors["T_max"].startswith("T_max must be an integer")
    blank = schedule_view.check(schedule, "retime", {"T_max": " "}, set())
    assert blank.errors == {"T_max": "T_max is required"}
    warm = schedule_view.check(schedule, "restart", {"steps": "8", "warmup_steps": "9"}, set())
    assert "warmup_steps" in warm.errors  # not mistaken for "steps"


def test_fix_keys():
    assert fix_key({"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}) == "h"
    assert fix_key({"type": "adjust", "op": "reanneal", "args": {"steps": 5}}) == "n"
    assert fix_key({"type": "adjust", "op": "restart", "args": {}}) == "w"
    assert fix_key({"type": "pause"}) == "p"
    assert fix_key(None) is None
    history = History.from_events(scripted_events())
    keys = assign_keys(history.active_alerts())
    assert set(keys) == {"h", "w"}


@pytest.mark.parametrize(
    "value, text",
    [
        (0.123456, "0.1235"),
        (None, "-"),
        (math.nan, "nan"),
        (1e-7, "1.00e-07"),
        (12345.0, "1.23e+04"),
    ],
)
def test_fmt_loss(value, text):
    assert fmt_loss(value) == text


def test_formats():
    assert fmt_lr(0.0352) == "3.52e-2" and fmt_lr(0) == "0" and fmt_lr(None) == "-"
    assert (
        fmt_duration(42) == "42s"
        and fmt_duration(187) == "3:07"
        and fmt_duration(3723) == "1:02:03"
    )
    assert fmt_rate(3200) == "3.2k/s" and fmt_rate(0) == "-"
    assert fmt_number(0.001) == "0.001" and fmt_number(8) == "8" and fmt_number(2.0) == "2"


@pytest.mark.parametrize("theme", ["textual-design-dark", "pro", "clear"])
def test_plotext_output_becomes_the_same_styled_cells_as_richs_decoder(theme):
    """The fast ANSI reader gives, cell for cell, the characters and styles rich's general
    decoder gives for a real plotext figure."""
    from rich.console import Console
    from rich.text import Text
    from textual_plotext import PlotextPlot  # noqa: F401 - registers the textual themes
    from textual_plotext.plot import Plot

    from cosinetui.ui.ansi_strips import AnsiPicture, ansi_lines

    plt = Plot()
    plt.clear_figure()
    plt.plotsize(50, 14)
    plt._set_size(50, 14)
    plt.theme(theme)
    xs = [i / 10 for i in range(200)]
    plt.plot(xs, [2 / math.sqrt(1 + x) for x in xs], marker="braille", color="cyan+")
    plt.plot(xs, [2.2 / math.sqrt(1 + x) for x in xs], marker="dot", color="orange+")
    plt.scatter([5.0], [1.0], marker="●", color="yellow+")
    ansi = plt.build()

    console = Console(width=200)

    def cells(lines):
        return [[(ch, style or None) for text, style in line for ch in text] for line in lines]

    want = cells(
        [(seg.text, seg.style) for seg in line.render(console)] for line in Text.from_ansi(ansi).split("\n")
    )
    got = cells([(seg.text, seg.style) for seg in line] for line in ansi_lines(ansi))
    assert got == want
    picture = AnsiPicture(ansi)
    assert str(picture) == Text.from_ansi(ansi).plain.removesuffix("\n")
    assert picture.get_height({}, 50) == 14 and picture.width == 50


def test_ansi_codes_accumulate_until_a_reset():
    from rich.style import Style

    from cosinetui.ui.ansi_strips import ansi_lines

    line = ansi_lines("\x1b[1mA\x1b[31mB\x1b[0mC")[0]
    assert [(s.text, s.style) for s in line] == [
        ("A", Style(bold=True)),
        ("B", Style(bold=True, color="color(1)")),
        ("C", None),
    ]
