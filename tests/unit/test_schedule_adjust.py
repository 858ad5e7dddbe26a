"""Adjustments, refused inputs and state of the cosine schedule."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import CosineAnnealingLR

from cosinetui.schedule import AdjustableCosineLR, CosineSchedule

BASES = [0.1, 0.02]


def make_opt(lrs=BASES) -> torch.optim.Optimizer:
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=0.1)


def advance(sched, n: int) -> None:
    for _ in range(n):
        sched.optimizer.step()
        sched.step()


def at(step: int, T_max: int = 100, eta_min: float = 0.001, **kw) -> AdjustableCosineLR:
    sched = AdjustableCosineLR(make_opt(), T_max, eta_min, **kw)
    advance(sched, step)
    return sched


def opt_lrs(sched) -> list[float]:
    return [g["lr"] for g in sched.optimizer.param_groups]


# -- reanneal ---------------------------------------------------------------------------------


def test_reanneal_is_continuous_and_reaches_the_floor():
    sched = at(30)
    before = sched.get_last_lr()
    sched.reanneal(50)
    assert sched.get_last_lr() == opt_lrs(sched) == before  # bit for bit
    assert sched.lr_at(80) == [0.001, 0.001]
    assert sched.lr_at(500) == [0.001, 0.001]  # an adjusted segment holds its floor
    assert sched.schedule.end_step == 80
    advance(sched, 1)
    assert all(a < b for a, b in zip(sched.get_last_lr(), before, strict=True))


def test_reanneal_default_length_is_what_remains():
    sched = at(30)
    sched.reanneal()
    assert sched.schedule.end_step == 100
    assert sched.lr_at(100) == [0.001, 0.001]
    assert sched.adjustments[-1].args["steps"] is None


def test_reanneal_moves_the_floor_and_halves_the_lr():
    sched = at(20)
    before = sched.get_last_lr()
    sched.reanneal(40, eta_min=0.0005, factor=0.5)
    assert sched.get_last_lr() == [0.5 * lr for lr in before]
    assert sched.lr_at(60) == [0.0005, 0.0005]
    mid = sched.lr_at(40)
    expected = [0.0005 + (0.5 * b - 0.0005) * (1 + math.cos(math.pi * 20 / 40)) / 2 for b in before]
    assert mid == expected


def test_reanneal_keeps_the_current_floor():
    sched = at(10)
    sched.reanneal(20, eta_min=0.004)
    advance(sched, 5)
    sched.reanneal(10)
    assert sched.lr_at(25) == [0.004, 0.004]


def test_reanneal_past_T_max_needs_steps():
    sched = at(120)
    state = sched.state_dict()
    with pytest.raises(ValueError, match="steps"):
        sched.reanneal()
    assert sched.state_dict() == state
    sched.reanneal(10)
    assert sched.lr_at(130) == [0.001, 0.001]


def test_reanneal_in_a_restart_cycle_defaults_to_the_cycle_end():
    sched = at(12, T_max=5, restarts=True, T_mult=2)  # cycles 0-5, 5-15, 15-35
    sched.reanneal()
    assert sched.schedule.end_step == 15
    assert sched.lr_at(15) == sched.lr_at(40) == [0.001, 0.001]


def test_reanneal_during_a_ramp_defaults_to_the_end_of_its_anneal():
    sched = at(2, T_max=20, warmup_steps=5)
    sched.reanneal()
    assert sched.schedule.end_step == 20
    sched = at(50)
    sched.restart(steps=30, warmup_steps=10)
    advance(sched, 4)
    sched.reanneal(factor=0.5)
    assert sched.schedule.end_step == 80
    assert sched.lr_at(80) == [0.001, 0.001]


# -- retime ---------------------------------------------------------------------------------


def test_retime_jumps_onto_the_longer_curve():
    sched = at(40)
    sched.retime(200)
    ref = CosineAnnealingLR(make_opt(), 200, 0.001)
    for t in (40, 41, 150, 199, 200):
        ref.last_epoch = t
        assert sched.lr_at(t) == ref._get_closed_form_lr()
    assert sched.get_last_lr() == sched.lr_at(40) == opt_lrs(sched)
    assert sched.lr_at(250) == [0.001, 0.001]  # holds past its end


def test_retime_shorter_and_past_T_max():
    sched = at(150)
    sched.retime(160)
    assert sched.lr_at(160) == [0.001, 0.001]
    assert sched.get_last_lr()[0] < 0.001 + 1e-3


def test_retime_into_the_past_is_refused_where_torch_explodes():
    opt = make_opt([0.1])
    ref = CosineAnnealingLR(opt, 100)
    advance(ref, 60)
    ref.T_max = 59
    worst = 0.0
    for _ in range(60):
        advance(ref, 1)
        worst = max(worst, ref.get_last_lr()[0])
    assert worst > 100 * 0.1  # torch's recursion runs away
    sched = at(60)
    state = sched.state_dict()
    for bad in (50, 59, 60):
        with pytest.raises(ValueError, match=r"T_max.*current step 60"):
            sched.retime(bad)
    assert sched.state_dict() == state


def test_retime_during_warmup_keeps_the_ramp():
    sched = at(2, T_max=20, warmup_steps=5)
    ramp = [sched.lr_at(t) for t in range(6)]
    sched.retime(40)
    assert [sched.lr_at(t) for t in range(6)] == ramp[:5] + [sched.lr_at(5)]
    ref = CosineAnnealingLR(make_opt(), 35, 0.001)
    ref.last_epoch = 10
    assert sched.lr_at(15) == ref._get_closed_form_lr()
    assert sched.lr_at(40) == [0.001, 0.001]
    with pytest.raises(ValueError, match="warmup_steps 5"):
        sched.retime(4)


# -- restart --------------------------------------------------------------------------------


def test_restart_goes_back_to_the_base_and_the_original_floor():
    sched = at(90)
    sched.reanneal(5, eta_min=0.0)
    advance(sched, 10)
    sched.restart()
    assert sched.get_last_lr() == BASES
    assert sched.lr_at(200) == [0.001, 0.001]  # the original T_max, original floor
    assert sched.lr_at(199) > [0.001, 0.001]


def test_restart_scalar_peak_scales_groups_by_base_ratio():
    sched = at(50)
    sched.restart(steps=30, peak_lr=0.05, eta_min=0.0)
    assert sched.get_last_lr() == [0.05, 0.05 * (0.02 / 0.1)]
    assert sched.lr_at(80) == [0.0, 0.0]
    sched.restart(steps=10, peak_lr=[0.07, 0.03])
    assert sched.get_last_lr() == [0.07, 0.03]


def test_restart_with_warmup_ramps_from_the_current_lr():
    sched = at(100, eta_min=0.0)
    assert sched.get_last_lr() == [0.0, 0.0]
    sched.restart(steps=20, warmup_steps=4)
    assert sched.get_last_lr() == [0.0, 0.0]
    assert sched.lr_at(102) == [0.05, 0.01]
    assert sched.lr_at(104) == BASES
    assert sched.lr_at(120) == [0.0, 0.0]
    kinds = [s.kind for s in sched.segments]
    assert kinds == ["cosine", "linear", "cosine"]


@settings(max_examples=25, deadline=None)
@given(step=st.integers(0, 150), peak=st.floats(0.01, 1.0), n=st.integers(2, 60), data=st.data())
def test_restart_ends_on_the_floor(step, peak, n, data):
    w = data.draw(st.integers(0, n - 1))
    sched = at(step)
    before = sched.get_last_lr()
    sched.restart(steps=n, peak_lr=peak, warmup_steps=w)
    peaks = [peak, peak * (0.02 / 0.1)]
    assert sched.get_last_lr() == (before if w else peaks)
    assert sched.lr_at(step + w) == peaks
    assert sched.lr_at(step + n) == [0.001, 0.001]


# -- properties of any sequence of adjustments ------------------------------------------------

op_st = st.one_of(
    st.tuples(
        st.just("reanneal"),
        st.fixed_dictionaries(
            {"steps": st.integers(1, 50)},
            optional={"factor": st.floats(0.5, 1.0), "eta_min": st.sampled_from([0.0, 0.0005])},
        ),
    ),
    st.tuples(st.just("retime"), st.fixed_dictionaries({"T_max": st.integers(1, 300)})),
    st.tuples(
        st.just("restart"),
        st.fixed_dictionaries(
            {},
            optional={
                "steps": st.integers(5, 60),
                "peak_lr": st.floats(0.01, 0.2),
                "warmup_steps": st.integers(0, 4),
            },
        ),
    ),
)


@settings(max_examples=30, deadline=None)
@given(
    plan=st.lists(st.tuples(st.integers(0, 40), op_st), max_size=5),
    warmup=st.integers(0, 10),
    restarts=st.booleans(),
)
def test_adjustments_never_rewrite_the_past_and_state_round_trips(plan, warmup, restarts):
    sched = AdjustableCosineLR(make_opt(), 60, 0.001, warmup_steps=warmup, restarts=restarts)
    followed = [sched.get_last_lr()]
    for gap, (op, args) in plan:
        for _ in range(gap):
            advance(sched, 1)
            followed.append(sched.get_last_lr())
        try:
            sched.apply(op, args)
        except ValueError:
            continue
        followed[-1] = sched.get_last_lr()  # an adjustment sets the LR of the current step
        assert opt_lrs(sched) == sched.get_last_lr()
    now = sched.last_epoch
    assert [sched.lr_at(t) for t in range(now + 1)] == followed
    future = [sched.lr_at(t) for t in range(now, now + 150)]
    assert all(math.isfinite(x) and x >= 0 for lrs in future for x in lrs)

    state = json.loads(json.dumps(sched.state_dict()))
    assert state == sched.state_dict()
    preview = CosineSchedule.from_state(state)
    assert [preview.lr_at(t) for t in range(now, now + 150)] == future

    # replaying the recorded history rebuilds the same plan
    replay = CosineSchedule(BASES, 60, 0.001, warmup_steps=warmup, restarts=restarts)
    for adj in sched.adjustments:
        replay.step = adj.step
        replay.apply(adj.op, adj.args)
    assert replay.segments == sched.schedule.segments


# -- state ----------------------------------------------------------------------------------


def adjusted_run():
    sched = at(30, warmup_steps=5)
    sched.reanneal(40, factor=0.8)
    advance(sched, 7)
    sched.restart(steps=50, peak_lr=0.05, warmup_steps=3)
    advance(sched, 2)
    return sched


@pytest.mark.parametrize("restore_optimizer", ["no", "before", "after"])
def test_resume_reproduces_remaining_lrs_bit_for_bit(restore_optimizer):
    sched = adjusted_run()
    saved_sched = json.loads(json.dumps(sched.state_dict()))
    saved_opt = copy.deepcopy(sched.optimizer.state_dict())
    expected = []
    for _ in range(80):
        advance(sched, 1)
        expected.append(sched.get_last_lr())

    opt = make_opt([0.5, 0.5])  # a fresh optimizer with unrelated LRs
    if restore_optimizer == "before":
        opt.load_state_dict(saved_opt)
    resumed = AdjustableCosineLR(opt, 100, 0.001, warmup_steps=5)
    resumed.load_state_dict(saved_sched)
    if restore_optimizer == "after":
        opt.load_state_dict(saved_opt)
    assert resumed.last_epoch == 39
    assert len(resumed.adjustments) == 2
    got = []
    for _ in range(80):
        advance(resumed, 1)
        got.append(resumed.get_last_lr())
    assert got == expected


def test_torch_resumes_with_a_wrong_lr_when_only_the_scheduler_is_loaded():
    ref = CosineAnnealingLR(make_opt([0.1]), 100)
    advance(ref, 30)
    saved = ref.state_dict()
    advance(ref, 1)
    want = ref.get_last_lr()
    fresh = CosineAnnealingLR(make_opt([0.1]), 100)
    fresh.load_state_dict(saved)
    advance(fresh, 1)
    assert fresh.get_last_lr()[0] > 1.2 * want[0]  # continues from the fresh optimizer's LR

    sched = at(30)
    saved = sched.state_dict()
    advance(sched, 1)
    fresh = AdjustableCosineLR(make_opt(), 100, 0.001)
    fresh.load_state_dict(saved)
    advance(fresh, 1)
    assert fresh.get_last_lr() == sched.get_last_lr()


def test_state_dict_layout():
    sched = adjusted_run()
    state = sched.state_dict()
    assert set(state) == {
        "version",
        "step",
        "base_lrs",
        "config",
        "segments",
        "adjustments",
        "last_lrs",
    }
    assert state["version"] == 1
    assert state["step"] == 39
    assert state["base_lrs"] == BASES
    assert state["last_lrs"] == sched.get_last_lr()
    assert state["adjustments"][0] == {
        "step": 30,
        "op": "reanneal",
        "args": {"steps": 40, "eta_min": None, "factor": 0.8},
    }
    assert [s["kind"] for s in state["segments"]] == [
        "warmup",
        "cosine",
        "cosine",
        "linear",
        "cosine",
    ]
    assert json.loads(json.dumps(state)) == state


def test_unknown_version_and_group_mismatch_are_clear_errors():
    state = at(3).state_dict()
    with pytest.raises(ValueError, match="malformed"):
        CosineSchedule.from_state({k: v for k, v in state.items() if k != "segments"})
    with pytest.raises(ValueError, match="version 99"):
        CosineSchedule.from_state({**state, "version": 99})
    with pytest.raises(ValueError, match="version"):
        at(0).load_state_dict({**state, "version": 99})
    one_group = AdjustableCosineLR(make_opt([0.1]), 100)
    with pytest.raises(ValueError, match="param groups"):
        one_group.load_state_dict(state)


def test_preview_does_not_touch_the_scheduler():
    sched = at(30)
    state = sched.state_dict()
    preview = CosineSchedule.from_state(state)
    preview.reanneal(steps=10)
    assert preview.end_step == 40
    assert preview.curve(30, 45)[-1] == 0.001
    assert len(preview.curve(30, 45, group=1)) == 15
    assert sched.state_dict() == state
    assert sched.schedule.end_step == 100


# -- refused inputs -------------------------------------------------------------------------

REFUSED = [
    ("reanneal", {"steps": 0}, r"steps must be an integer >= 1"),
    ("reanneal", {"steps": -3}, r"steps must be an integer >= 1"),
    ("reanneal", {"steps": 2.5}, r"steps must be an integer >= 1, got 2.5"),
    ("reanneal", {"steps": True}, r"steps must be an integer"),
    ("reanneal", {"steps": "10"}, r"steps must be an integer"),
    ("reanneal", {"steps": 10, "factor": -0.5}, r"factor must be a finite number >= 0"),
    ("reanneal", {"steps": 10, "factor": math.nan}, r"factor must be a finite number"),
    ("reanneal", {"steps": 10, "factor": math.inf}, r"factor must be a finite number"),
    ("reanneal", {"steps": 10, "eta_min": -0.1}, r"eta_min must be a finite number >= 0"),
    ("reanneal", {"steps": 10, "eta_min": 0.5}, r"eta_min must lie in \[0, factor x current LR\]"),
    ("reanneal", {"steps": 10, "eta_min": [0.0]}, r"eta_min must be a number or a list of 2"),
    ("reanneal", {"steps": 10, "factor": 0.001}, r"group 0 has eta_min"),
    ("retime", {"T_max": 20}, r"T_max must be an integer > the current step 20"),
    ("retime", {"T_max": 10.5}, r"T_max must be an integer"),
    ("retime", {"T_max": math.inf}, r"T_max must be an integer"),
    ("restart", {"steps": 0}, r"steps must be an integer >= 1"),
    (
        "restart",
        {"steps": 10, "warmup_steps": 10},
        r"warmup_steps must be an integer in \[0, steps - 1 = 9\]",
    ),
    ("restart", {"warmup_steps": -1}, r"warmup_steps must be an integer"),
    ("restart", {"peak_lr": -1.0}, r"peak_lr must be a finite number >= 0"),
    ("restart", {"peak_lr": math.inf}, r"peak_lr must be a finite number >= 0"),
    ("restart", {"peak_lr": [0.1, math.nan]}, r"peak_lr\[1\] must be a finite number"),
    ("restart", {"peak_lr": 0.01, "eta_min": 0.05}, r"eta_min must lie in \[0, peak_lr\]"),
    ("restart", {"eta_min": math.nan}, r"eta_min must be a finite number"),
    ("unwind", {}, r"op must be one of reanneal, retime, restart"),
    ("retime", {"T_max": 50, "eta_min": 0.0}, r"retime: unknown argument"),
]


@pytest.mark.parametrize("op,args,message", REFUSED)
def test_refused_inputs_leave_the_schedule_unchanged(op, args, message):
    sched = at(20)
    state = sched.state_dict()
    lrs = opt_lrs(sched)
    with pytest.raises(ValueError, match=message):
        sched.apply(op, args)
    assert sched.state_dict() == state
    assert opt_lrs(sched) == lrs


def test_methods_refuse_like_apply():
    sched = at(20)
    with pytest.raises(ValueError, match="steps"):
        sched.reanneal(0)
    with pytest.raises(ValueError, match="T_max"):
        sched.retime(3)
    with pytest.raises(ValueError, match="peak_lr"):
        sched.restart(peak_lr=-2)
    assert sched.adjustments == []


def test_apply_accepts_integral_floats_from_json():
    sched = at(20)
    sched.apply("reanneal", {"steps": 50.0})
    assert sched.schedule.end_step == 70
    assert sched.adjustments[-1].args["steps"] == 50
    sched.apply("retime", {"T_max": 90.0})
    sched.apply("restart", {"steps": 30.0, "warmup_steps": 2.0, "peak_lr": 1})
    assert sched.schedule.end_step == 50


def test_an_adjustment_upward_from_a_floor_above_the_base_is_refused():
    sched = AdjustableCosineLR(make_opt([0.01]), 10, 0.05)
    with pytest.raises(ValueError, match="eta_min"):
        sched.reanneal(5)
    sched.reanneal(5, eta_min=0.0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"T_max": 0}, "T_max"),
        ({"T_max": 2.5}, "T_max"),
        ({"T_max": 10, "eta_min": -1.0}, "eta_min"),
        ({"T_max": 10, "eta_min": math.nan}, "eta_min"),
        ({"T_max": 10, "warmup_steps": 10}, r"warmup_steps .*\[0, T_max - 1 = 9\]"),
        ({"T_max": 10, "warmup_steps": 2, "warmup_start_factor": 0.0}, "warmup_start_factor"),
        ({"T_max": 10, "warmup_start_factor": 1.5}, "warmup_start_factor"),
        ({"T_max": 10, "restarts": True, "T_mult": 0}, "T_mult"),
        ({"T_max": 10, "restarts": "yes"}, "restarts"),
    ],
)
def test_constructor_refuses_what_torch_cannot_run(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdjustableCosineLR(make_opt(), **kwargs)


def test_lr_at_and_curve_are_pure():
    sched = at(10)
    before = opt_lrs(sched)
    curve = sched.schedule.curve(0, 300)
    assert curve[0] == 0.1 and curve[100] == pytest.approx(0.001)
    assert curve[200] == pytest.approx(0.1)  # the original curve is periodic, like torch's
    assert opt_lrs(sched) == before and sched.last_epoch == 10
    with pytest.raises(ValueError, match="step"):
        sched.lr_at(-1)
    with pytest.raises(ValueError, match="group"):
        sched.schedule.curve(0, 5, group=2)
