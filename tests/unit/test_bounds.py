"""What a file may make a reader do: bounded records, bounded schedules, bounded adjustments."""

from __future__ import annotations

import json
import math
import os
import tracemalloc

import pytest
import torch

from cosinetui import store
from cosinetui.cosine import CosineSchedule
from cosinetui.events import BatchChunk, EpochEnd, RunStarted, to_json
from cosinetui.history import History
from cosinetui.schedule import AdjustableCosineLR


def started(schedule: dict | None = None, **fields) -> RunStarted:
    schedule = schedule or CosineSchedule([0.1], 4).state_dict()
    return RunStarted("r", "runs/r", "cpu", "2.13", 10, 4, 2, "epoch", schedule, {}, **fields)


def write_log(path, records) -> None:
    with open(path, "w") as fh:
        for record in records:
            fh.write((record if isinstance(record, str) else json.dumps(to_json(record))) + "\n")


# -- a metrics log's records ------------------------------------------------------------------


def test_a_chunk_claiming_a_huge_first_step_is_skipped_not_allocated(tmp_path):
    log = tmp_path / store.METRICS
    write_log(log, [
        started(),
        BatchChunk(1, 0, (0.5, 0.4), (0.1, 0.1), 2),
        BatchChunk(1, 10**12, (0.3,), (0.1,), 3),
        BatchChunk(1, 2, (0.3, 0.2), (0.1, 0.1), 4),
        EpochEnd(1, 0.35, 0.3, 0.1, 1.0, 10.0, 4),
    ])
    read = store.read_log(tmp_path)
    assert [e.type for e in read.events] == ["run_started", "batches", "batches", "epoch"]
    assert len(read.problems) == 1 and ":3: skipped: first_step 1000000000000" in read.problems[0]
    history = History.from_events(read.events)
    assert list(history.losses) == [0.5, 0.4, 0.3, 0.2]


def test_small_gaps_are_kept_as_the_history_always_kept_them(tmp_path):
    # A kill can lose the log's last buffered lines while the checkpoint has them: the resumed
    # run's first chunk then starts past the recorded steps.
    write_log(tmp_path / store.METRICS, [
        started(),
        BatchChunk(1, 0, (0.5,) * 100, (0.1,) * 100, 100),
        started(start_epoch=1, global_step=400),
        BatchChunk(2, 400, (0.4,) * 10, (0.1,) * 10, 10),
    ])
    read = store.read_log(tmp_path)
    assert not read.problems
    history = History.from_events(read.events)
    assert history.step == 410 and math.isnan(history.losses[200])


def test_gaps_may_not_add_up_past_the_losses_recorded(tmp_path):
    # Many lines each claiming a gap within the allowance must not add up to gigabytes.
    gap = store.GAP_ALLOWANCE // 2
    records = [started()] + [BatchChunk(1, i * (gap + 1), (0.5,), (0.1,), 1) for i in range(1, 50)]
    write_log(tmp_path / store.METRICS, records)
    read = store.read_log(tmp_path)
    kept = [e for e in read.events if e.type == "batches"]
    assert len(kept) == 2 and len(read.problems) == 47
    assert History.from_events(read.events).step <= 3 * store.GAP_ALLOWANCE


def test_a_line_longer_than_the_limit_is_skipped_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_LINE", 4096)
    big = json.dumps({**to_json(EpochEnd(1, 0.5, 0.4)), "notes": "x" * 10_000})
    write_log(tmp_path / store.METRICS, [started(), big, EpochEnd(2, 0.4, 0.3)])
    read = store.read_log(tmp_path)
    assert [e.type for e in read.events] == ["run_started", "epoch"]
    assert read.events[1].epoch == 2
    assert read.problems == [f"{tmp_path / store.METRICS}:2: skipped: longer than 0 MiB"]


def test_a_run_started_with_an_unusable_schedule_is_kept_without_it(tmp_path):
    bad = CosineSchedule([0.1], 4).state_dict()
    bad["segments"][0]["length"] = 10**300
    write_log(tmp_path / store.METRICS, [started(bad), EpochEnd(1, 0.5, 0.4)])
    read = store.read_log(tmp_path)
    assert [e.type for e in read.events] == ["run_started", "epoch"]
    assert read.events[0].schedule is None and read.events[0].run_name == "r"
    assert "bad schedule" in read.problems[0]


# -- schedules read from a file ---------------------------------------------------------------


def test_a_long_warmup_costs_bounded_memory():
    schedule = CosineSchedule([0.1], 10**6 + 1, warmup_steps=10**6)
    tracemalloc.start()
    try:
        schedule.lr_at(10**6 - 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # a value kept every 256 steps, not a table of a million


def test_a_warmup_of_ten_billion_steps_is_evaluated_at_once():
    state = CosineSchedule([0.1], 10**10 + 1, warmup_steps=10**10).state_dict()
    schedule = CosineSchedule.from_state(state)
    assert schedule.lr_at(0)[0] == pytest.approx(0.1 / 3)
    assert schedule.lr_at(5 * 10**9)[0] == pytest.approx(0.1 * (1 / 3 + 2 / 3 / 2))
    assert schedule.lr_at(10**10)[0] == 0.1


def test_the_warmup_stays_bit_exact_with_torch_across_kept_values():
    model = torch.nn.Linear(2, 2)
    ref_opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref = torch.optim.lr_scheduler.LinearLR(ref_opt, start_factor=1 / 3, total_iters=1000)
    schedule = CosineSchedule([0.1], 2000, warmup_steps=1000)
    for step in range(1000):  # step 1000 is the cosine's (its peak, as SequentialLR gives)
        assert schedule.lr_at(step)[0] == ref_opt.param_groups[0]["lr"], step
        ref_opt.step()
        ref.step()
    # Asked out of order, from the values kept along the way: the same numbers.
    again = CosineSchedule([0.1], 2000, warmup_steps=1000)
    assert [again.lr_at(s)[0] for s in (999, 3, 512, 257)] == [schedule.lr_at(s)[0] for s in (999, 3, 512, 257)]


@pytest.mark.parametrize("change", [
    {"length": 0}, {"start": -1}, {"length": 2**60}, {"kind": "exotic"}, {"t_mult": "2"}, {"peak": [float("nan")]},
])
def test_a_stored_schedule_that_could_not_have_been_made_is_refused(change):
    state = CosineSchedule([0.1], 4).state_dict()
    state["segments"][0].update(change)
    with pytest.raises(ValueError, match="malformed schedule state"):
        CosineSchedule.from_state(state)


# -- adjustments that raise the LR far past the run's peak -------------------------------------


def test_a_restart_far_above_the_peak_needs_force():
    schedule = CosineSchedule([0.1], 100)
    with pytest.raises(ValueError, match=r"^peak_lr: .*over 100x the run's peak 0.1; give force=true"):
        schedule.restart(peak_lr=2.0**53)
    schedule.restart(peak_lr=5.0)  # 50x: allowed
    schedule.restart(peak_lr=50.0, force=True)
    assert schedule.lr_at(schedule.step)[0] == 50.0
    assert schedule.adjustments[-1].args["force"] is True
    # Once there, annealing from the current LR is no raise and needs no force.
    schedule.reanneal(10)
    clone = CosineSchedule.from_state(schedule.state_dict())
    assert clone.lr_at(schedule.step) == schedule.lr_at(schedule.step)


def test_a_reanneal_factor_far_above_the_peak_needs_force():
    schedule = CosineSchedule([0.1, 0.01], 100)
    with pytest.raises(ValueError, match=r"^factor: "):
        schedule.reanneal(factor=1e6)
    with pytest.raises(ValueError, match="force must be true or false"):
        schedule.reanneal(factor=2, force="yes")
    schedule.reanneal(factor=1e6, force=True)
    assert schedule.adjustments[-1].args == {"steps": None, "eta_min": None, "factor": 1e6, "force": True}


def test_the_torch_scheduler_and_commands_take_force():
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    sched = AdjustableCosineLR(opt, T_max=10)
    with pytest.raises(ValueError, match="force"):
        sched.apply("restart", {"peak_lr": 1e3})
    sched.apply("restart", {"peak_lr": 1e3, "force": True})
    assert opt.param_groups[0]["lr"] == 1e3
    sched.restart(peak_lr=2e3, force=True)
    assert opt.param_groups[0]["lr"] == 2e3


# -- config.json ------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "expected a JSON object, got a list"),
    ('{"target": null, "entry": "experiment"}', "no 'overrides' field"),
    ('{"target": 3, "entry": "experiment", "overrides": {}}', "target must be a string or null, got int"),
    ('{"target": null, "entry": "e", "overrides": {"epochs": "4"}}', "overrides.epochs must be an integer, got str"),
    ('{"target": null, "entry": "e", "overrides": {"lr": true}}', "overrides.lr must be a number, got bool"),
    ('{"target": null, "entry": "e", "overrides": {}, "amp": 1}', "amp must be true or false, got int"),
    ("{oops", "unreadable"),
])
def test_a_config_resume_cannot_use_is_one_clear_error(tmp_path, content, message):
    (tmp_path / store.CONFIG).write_text(content)
    with pytest.raises(store.RunDirError, match=message):
        store.check_config(tmp_path, store.read_config(tmp_path))


def test_config_is_not_read_through_a_symlink(tmp_path):
    (tmp_path / "elsewhere.json").write_text('{"target": null, "entry": "e", "overrides": {}}')
    os.symlink(tmp_path / "elsewhere.json", tmp_path / store.CONFIG)
    with pytest.raises(store.RunDirError, match="unreadable"):
        store.read_config(tmp_path)


def test_the_metrics_log_is_never_written_through_a_symlink(tmp_path):
    target = tmp_path / "victim"
    os.symlink(target, tmp_path / store.METRICS)
    with pytest.raises(store.RunDirError, match="symbolic link"):
        store.MetricsLog(tmp_path / store.METRICS)
    assert not target.exists()
