"""Event JSON round trips, history rebuilding, decimation and the metrics log reader."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosinetui import store
from cosinetui.cosine import CosineSchedule
from cosinetui.events import (
    COMMAND_TYPES,
    AdjustSchedule,
    Alert,
    BatchChunk,
    CheckpointWritten,
    CommandRefused,
    EpochEnd,
    Failed,
    Finished,
    Paused,
    Resumed,
    RunStarted,
    ScheduleChanged,
    command_from_json,
    from_json,
    to_json,
)
from cosinetui.headless import Printer, format_event
from cosinetui.history import History, decimate, ema

SCHED = CosineSchedule([0.1], 3).state_dict()

SAMPLES = [
    RunStarted("r", "runs/r", "cpu", "2.13", 10, 3, 4, "epoch", SCHED, {"a": 1}, 0, 0, 1.5),
    BatchChunk(1, 0, (0.5, math.nan, 0.25), (0.1, 0.1, 0.1), 3),
    EpochEnd(1, 0.5, None, 0.1, 1.0, 100.0, 4, {"acc": 0.5}),
    EpochEnd(2, math.nan, math.inf, 0.1),
    ScheduleChanged(3, "reanneal", {"steps": 5}, SCHED, (0.05,)),
    CommandRefused({"type": "adjust", "op": "retime", "args": {"T_max": 1}}, "T_max must ..."),
    Paused(1, 2, "nan"),
    Resumed(1, 2),
    CheckpointWritten("runs/r/checkpoint.pt", 1, 4, "epoch"),
    Alert("nan", "critical", 1, "loss is NaN", "pause", 3, {"type": "pause"}, "nan:3"),
    Finished(3, 12, "completed", 0.2),
    Failed(1, 5, "RuntimeError: x", "Traceback ..."),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_every_event_round_trips_through_strict_json(event):
    line = json.dumps(to_json(event), allow_nan=False)
    back = from_json(json.loads(line))
    assert type(back) is type(event)
    for name, value in vars(event).items():
        got = getattr(back, name)
        if isinstance(value, float) and not math.isfinite(value):
            assert got is None or math.isnan(got)  # null in JSON: "not a number"
        elif isinstance(value, tuple):
            assert len(got) == len(value)
            assert all((a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, value, strict=True))
        else:
            assert got == value


def test_minimal_epoch_record_from_another_tool():
    e = from_json({"type": "epoch", "epoch": 3, "train_loss": None, "val_loss": 0.66, "lr": 0.09, "extra": 1})
    assert e.epoch == 3 and math.isnan(e.train_loss) and e.val_loss == 0.66 and e.step == 0


@pytest.mark.parametrize("data", [{}, {"type": "nope"}, {"type": "epoch"}, {"type": "epoch", "epoch": 1}])
def test_bad_records_raise_value_error(data):
    with pytest.raises(ValueError):
        from_json(data)


def test_commands_round_trip_and_validate():
    for cls in COMMAND_TYPES.values():
        cmd = cls() if cls is not AdjustSchedule else AdjustSchedule("restart", {"steps": 10})
        assert command_from_json(json.loads(json.dumps(to_json(cmd)))) == cmd
    with pytest.raises(ValueError, match="unknown schedule operation"):
        command_from_json({"type": "adjust", "op": "explode", "args": {}})
    with pytest.raises(ValueError, match="args"):
        command_from_json({"type": "adjust", "op": "retime", "args": [1]})
    with pytest.raises(ValueError, match="unknown command"):
        command_from_json({"type": "format_disk"})


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5)), max_size=5))
def test_random_command_json_never_crashes_unexpectedly(data):
    try:
        command_from_json(data)
    except ValueError:
        pass


def chunk(first, losses, epoch=1, in_epoch=None):
    return BatchChunk(epoch, first, tuple(losses), tuple(0.1 for _ in losses), in_epoch or first + len(losses))


def test_history_tracks_state_batches_and_best_epoch():
    h = History()
    h.apply(SAMPLES[0])
    assert h.state == "running" and h.schedule == SCHED
    h.extend([chunk(0, [1.0, 0.9]), chunk(2, [0.8, 0.7])])
    assert list(h.losses) == [1.0, 0.9, 0.8, 0.7] and list(h.current_epoch_losses()) == [1.0, 0.9, 0.8, 0.7]
    h.apply(EpochEnd(1, 0.85, 0.9, 0.1, step=4))
    h.apply(EpochEnd(2, 0.6, 0.7, 0.1, step=8))
    h.apply(EpochEnd(3, 0.5, 0.8, 0.1, step=12))
    assert h.current_epoch_losses() == ()
    assert h.best_epoch.epoch == 2
    h.apply(Paused(3, 12, "user"))
    assert h.state == "paused"
    h.apply(Alert("plateau", "info", 3, "a", key="plateau:3"))
    h.apply(Alert("plateau", "warning", 4, "b", key="plateau:3"))
    h.apply(Alert("nan", "critical", 4, "c", key="nan:9"))
    assert [a.message for a in h.active_alerts()] == ["c", "b"]
    before = h.version
    h.apply(Finished(3, 12, "stopped"))
    assert h.state == "stopped" and h.version > before


def test_history_after_resume_drops_what_came_after_the_checkpoint():
    h = History()
    run = SAMPLES[0]
    h.apply(run)
    h.extend([chunk(0, [1.0] * 4), EpochEnd(1, 1.0, 1.0, 0.1, step=4), chunk(4, [2.0] * 3, epoch=2, in_epoch=3)])
    # The resumed process restarts from the epoch-1 checkpoint: 1 epoch, 4 batches.
    resumed = RunStarted(**{**vars(run), "start_epoch": 1, "global_step": 4})
    h.apply(resumed)
    assert len(h.epochs) == 1 and list(h.losses) == [1.0] * 4
    h.extend([chunk(4, [3.0] * 4, epoch=2, in_epoch=4), EpochEnd(2, 3.0, 3.0, 0.1, step=8)])
    assert list(h.losses) == [1.0] * 4 + [3.0] * 4 and [e.epoch for e in h.epochs] == [1, 2]
    assert list(h.train_losses) == [1.0, 3.0] and list(h.val_losses) == [1.0, 3.0]


def test_history_keeps_flat_epoch_losses_in_step_with_the_records():
    h = History()
    h.apply(SAMPLES[0])
    h.extend([EpochEnd(1, 0.9, None, 0.1, step=4), EpochEnd(2, 0.8, 0.7, 0.1, step=8)])
    assert list(h.train_losses) == [0.9, 0.8]
    assert math.isnan(h.val_losses[0]) and h.val_losses[1] == 0.7
    h.apply(EpochEnd(2, 0.5, 0.4, 0.1, step=8))  # a replayed epoch replaces the record
    assert list(h.train_losses) == [0.9, 0.5] and h.val_losses[1] == 0.4
    assert len(h.train_losses) == len(h.val_losses) == len(h.epochs)


def test_decimate_keeps_spikes_and_order():
    ys = [1.0] * 10_000
    ys[1234] = 50.0
    ys[8000] = -3.0
    s = decimate(ys, 100)
    assert len(s.xs) <= 200
    assert 50.0 in s.ys and -3.0 in s.ys
    assert s.xs == sorted(s.xs)
    assert s.xs[s.ys.index(50.0)] == 1234


def test_decimate_small_input_and_nans():
    s = decimate([1.0, math.nan, 3.0], 10, x0=5)
    assert s.xs == [5.0, 7.0] and s.ys == [1.0, 3.0]


def test_ema_is_debiased():
    assert ema([2.0, 2.0, 2.0], 0.1) == pytest.approx([2.0, 2.0, 2.0])
    out = ema([1.0, math.nan, 3.0], 0.5)
    assert out[0] == 1.0 and out[1] == 1.0 and 1.0 < out[2] < 3.0


def test_read_log_reports_a_truncated_last_line(tmp_path):
    log = store.MetricsLog(tmp_path / store.METRICS)
    for e in SAMPLES[:3]:
        log.write(e)
    log.close()
    with open(tmp_path / store.METRICS, "a") as fh:
        fh.write('{"type": "epoch", "epo')  # a crash mid-write
    read = store.read_log(tmp_path)
    assert [e.type for e in read.events] == ["run_started", "batches", "epoch"]
    assert len(read.problems) == 1 and "truncated last line" in read.problems[0]
    # Appending after the crash starts on a fresh line: the next record is readable.
    log = store.MetricsLog(tmp_path / store.METRICS)
    log.write(SAMPLES[-2])
    log.close()
    read = store.read_log(tmp_path)
    assert read.events[-1].type == "finished" and len(read.problems) == 1
    assert "truncated" not in read.problems[0]


def test_read_log_errors(tmp_path):
    with pytest.raises(store.RunDirError, match="no metrics.jsonl"):
        store.read_log(tmp_path)
    with pytest.raises(store.RunDirError, match="no such file"):
        store.read_log(tmp_path / "x.jsonl")


def test_headless_lines():
    assert format_event(SAMPLES[1]) is None
    line = format_event(SAMPLES[2])
    assert line.startswith("epoch    1") and "val -" in line and "acc 0.5000" in line
    assert "nan" in format_event(SAMPLES[3])
    lines: list[str] = []
    printer = Printer(lines.append)
    a = Alert("plateau", "info", 3, "flat", key="plateau:3")
    printer(a)
    printer(Alert("plateau", "info", 4, "flatter", key="plateau:3"))  # same episode, same severity
    printer(Alert("plateau", "warning", 5, "flattest", key="plateau:3"))  # escalated
    assert [line.split()[0] for line in lines] == ["INFO", "WARNING"]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "epoch", "epoch": 3, "train_loss": "NaN", "val_loss": 0.5, "lr": 0.1},
        {"type": "epoch", "epoch": "1", "train_loss": 0.5, "val_loss": 0.5, "lr": 0.1},
        {"type": "epoch", "epoch": True, "train_loss": 0.5},
        {"type": "epoch", "epoch": 1, "train_loss": 0.5, "seconds": None},
        {"type": "batches", "epoch": 1, "first_step": 0, "losses": "1,2", "lrs": []},
        {"type": "alert", "kind": "nan", "severity": "critical", "epoch": 1, "message": 3},
    ],
)
def test_mistyped_fields_are_refused(data):
    with pytest.raises(ValueError, match="must be"):
        from_json(data)


def test_a_log_with_mistyped_lines_skips_them(tmp_path):
    log = tmp_path / "m.jsonl"
    log.write_text(
        '{"type": "epoch", "epoch": 1, "train_loss": 0.9, "val_loss": 1.0, "lr": 0.1}\n'
        '{"type": "epoch", "epoch": "2", "train_loss": "NaN", "val_loss": 1.0, "lr": 0.1}\n'
        '{"type": "epoch", "epoch": 3, "train_loss": null, "val_loss": null, "lr": null}\n'
    )
    read = store.read_log(log)
    assert [e.epoch for e in read.events] == [1, 3] and len(read.problems) == 1


def test_read_log_skips_a_line_too_deep_to_parse(tmp_path):
    log = tmp_path / "m.jsonl"
    log.write_text("[" * 100_000 + "\n" + '{"type": "epoch", "epoch": 1, "train_loss": 0.5}\n')
    read = store.read_log(log)
    assert [e.epoch for e in read.events] == [1] and "recursion" in read.problems[0]


def test_batch_scalars_round_trip_with_nan_as_null_and_are_omitted_when_empty():
    c = BatchChunk(1, 0, (0.5, 0.4), (0.1, 0.1), 2, scalars={"grad_norm": [math.nan, 1.5], "tok_s": [10.0, 11.0]})
    data = json.loads(json.dumps(to_json(c), allow_nan=False))
    assert data["scalars"] == {"grad_norm": [None, 1.5], "tok_s": [10.0, 11.0]}
    back = from_json(data)
    assert math.isnan(back.scalars["grad_norm"][0]) and back.scalars["grad_norm"][1] == 1.5
    assert back.scalars["tok_s"] == [10.0, 11.0]
    assert "scalars" not in to_json(chunk(0, [1.0]))
    assert "train_metrics" not in to_json(EpochEnd(1, 0.5))
    e = EpochEnd(1, 0.5, train_metrics={"grad_norm": 0.7, "acc": math.nan})
    back = from_json(json.loads(json.dumps(to_json(e), allow_nan=False)))
    assert back.train_metrics["grad_norm"] == 0.7 and math.isnan(back.train_metrics["acc"])


@pytest.mark.parametrize(
    "scalars",
    [{"g": [1.0]}, {"g": "x"}, {"g": [1.0, "2"]}, [1.0, 2.0]],
    ids=["misaligned", "not-a-list", "a-string-value", "not-an-object"],
)
def test_bad_batch_scalars_are_refused(scalars):
    data = to_json(chunk(0, [1.0, 2.0]))
    data["scalars"] = scalars
    with pytest.raises(ValueError, match="scalars"):
        from_json(data)


def test_history_keeps_scalars_by_step_across_gaps_and_resume():
    h = History()
    run = SAMPLES[0]
    h.apply(run)
    h.apply(BatchChunk(1, 0, (1.0, 1.0), (0.1, 0.1), 2, scalars={"grad_norm": [2.0, math.nan]}))
    h.apply(chunk(2, [1.0, 1.0], in_epoch=4))  # no scalars in this chunk
    h.apply(BatchChunk(1, 4, (1.0,), (0.1,), 5, scalars={"grad_norm": [3.0], "acc": [0.5]}))
    g = list(h.scalar("grad_norm"))
    assert g[0] == 2.0 and all(math.isnan(x) for x in g[1:4]) and g[4] == 3.0
    acc = list(h.scalar("acc"))
    assert len(acc) == 5 and all(math.isnan(x) for x in acc[:4]) and acc[4] == 0.5
    assert h.scalar("missing") == ()
    h.apply(RunStarted(**{**vars(run), "start_epoch": 0, "global_step": 1}))
    assert list(h.scalar("grad_norm")) == [2.0] and len(h.scalar("acc")) == 1
    h.apply(BatchChunk(1, 1, (1.0,), (0.1,), 2, scalars={"grad_norm": [4.0]}))
    assert list(h.scalar("grad_norm")) == [2.0, 4.0]
