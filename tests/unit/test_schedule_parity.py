"""AdjustableCosineLR against torch's own schedulers."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    LinearLR,
    SequentialLR,
)

from cosinetui.schedule import AdjustableCosineLR, CosineSchedule

lrs_st = st.lists(
    st.floats(1e-6, 1.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=3
)
eta_st = st.sampled_from([0.0, 1e-6, 1e-4, 0.001, 0.01])


def make_opt(lrs) -> torch.optim.Optimizer:
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=0.1)


def step_both(*schedulers) -> None:
    for s in schedulers:
        s.optimizer.step()
        s.step()


def torch_closed_form(ref: CosineAnnealingLR, t: int) -> list[float]:
    """torch's own closed form at step t (what step(epoch=t) would use)."""
    ref.last_epoch = t
    return ref._get_closed_form_lr()


def near(a: list[float], b: list[float], amp: list[float], rel: float) -> bool:
    """Equal to `rel` of the peak-to-floor amplitude, or to a few ulps of the values."""
    return all(
        abs(x - y) <= rel * m + 4 * math.ulp(max(abs(x), abs(y)))
        for x, y, m in zip(a, b, amp, strict=True)
    )


@settings(max_examples=40, deadline=None)
@given(lrs=lrs_st, eta_min=eta_st, T_max=st.integers(1, 120))
def test_plain_equals_torch_closed_form_bitwise_past_T_max(lrs, eta_min, T_max):
    opt, ref_opt = make_opt(lrs), make_opt(lrs)
    sched = AdjustableCosineLR(opt, T_max, eta_min)
    ref = CosineAnnealingLR(ref_opt, T_max, eta_min)
    closed = CosineAnnealingLR(make_opt(lrs), T_max, eta_min)
    assert sched.get_last_lr() == ref.get_last_lr() == list(lrs)  # t=0: the base itself
    amp = [abs(b - eta_min) for b in lrs]
    for t in range(1, 3 * T_max + 2):
        step_both(sched, ref)
        assert sched.get_last_lr() == torch_closed_form(closed, t)
        assert sched.get_last_lr() == sched.lr_at(t)
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
        assert near(sched.get_last_lr(), ref.get_last_lr(), amp, 1e-11)


def test_eta_min_above_base_anneals_upward_like_torch():
    sched = AdjustableCosineLR(make_opt([0.01]), 10, 0.05)
    closed = CosineAnnealingLR(make_opt([0.01]), 10, 0.05)
    for t in range(1, 25):
        sched.optimizer.step()
        sched.step()
        assert sched.get_last_lr() == torch_closed_form(closed, t)
    assert sched.lr_at(10) == [0.05]


def torch_recursion(base: float, eta_min: float, T_max: int, n: int) -> list[float]:
    """CosineAnnealingLR.get_lr for steps 0..n with the same float operations, in plain
    Python so that a 1e6-step run costs a second instead of minutes."""
    lr, out = base, [base]
    for t in range(1, n + 1):
        if (t - 1 - T_max) % (2 * T_max) == 0:
            lr = lr + (base - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
        else:
            lr = (1 + math.cos(math.pi * t / T_max)) / (1 + math.cos(math.pi * (t - 1) / T_max)) * (
                lr - eta_min
            ) + eta_min
        out.append(lr)
    return out


@pytest.mark.parametrize("base,eta_min,T_max", [(0.1, 0.0, 7), (0.3, 0.01, 100), (1e-3, 1e-5, 64)])
def test_recursion_replica_is_torch_bit_for_bit(base, eta_min, T_max):
    opt = make_opt([base])
    ref = CosineAnnealingLR(opt, T_max, eta_min)
    got = [ref.get_last_lr()[0]]
    for _ in range(4 * T_max + 3):
        step_both(ref)
        got.append(ref.get_last_lr()[0])
    assert got == torch_recursion(base, eta_min, T_max, 4 * T_max + 3)


def test_million_steps_match_torch_recursion():
    base, eta_min, T_max, n = 0.1, 1e-5, 10_000, 1_000_000
    replica = torch_recursion(base, eta_min, T_max, n)
    schedule = CosineSchedule([base], T_max, eta_min)
    ours = schedule.curve(0, n + 1)
    worst = max(abs(a - b) for a, b in zip(ours, replica, strict=True))
    assert worst <= 1e-11 * (base - eta_min)


@settings(max_examples=30, deadline=None)
@given(lrs=lrs_st, eta_min=eta_st, T_0=st.integers(1, 12), T_mult=st.sampled_from([1, 2, 3]))
def test_restarts_equal_warm_restarts_bitwise(lrs, eta_min, T_0, T_mult):
    sched = AdjustableCosineLR(make_opt(lrs), T_0, eta_min, restarts=True, T_mult=T_mult)
    ref = CosineAnnealingWarmRestarts(make_opt(lrs), T_0, T_mult, eta_min)
    assert sched.get_last_lr() == ref.get_last_lr()
    for t in range(1, 200):
        step_both(sched, ref)
        assert sched.get_last_lr() == ref.get_last_lr()
        assert sched.lr_at(t) == ref.get_last_lr()


def test_restarts_find_the_cycle_where_torch_float_log_does_not():
    ref = CosineAnnealingWarmRestarts(make_opt([0.1]), T_0=1, T_mult=3, eta_min=0.001)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.step(121)  # cycles of 1, 3, 9, 27, 81 end at 121: a new cycle starts
    assert ref.get_last_lr() == [0.001]  # torch picks the wrong cycle
    sched = AdjustableCosineLR(make_opt([0.1]), 1, 0.001, restarts=True, T_mult=3)
    peak = sched.lr_at(121)
    assert peak == sched.lr_at(0) == sched.lr_at(1) == sched.lr_at(40)
    assert peak[0] == pytest.approx(0.1, rel=1e-15)
    for n in (4, 13, 40, 121, 364, 1093):  # every cycle start
        assert sched.lr_at(n) == peak
    assert sched.lr_at(120) != peak


def sequential_idiom(opt, T_max, eta_min, W, f):
    return SequentialLR(
        opt,
        [LinearLR(opt, start_factor=f, total_iters=W), CosineAnnealingLR(opt, T_max - W, eta_min)],
        milestones=[W],
    )


@settings(max_examples=30, deadline=None)
@given(
    lrs=lrs_st,
    eta_min=eta_st,
    T_max=st.integers(2, 80),
    data=st.data(),
    f=st.sampled_from([1 / 3, 0.01, 0.1, 0.5, 1.0]),
)
def test_warmup_equals_sequential_idiom(lrs, eta_min, T_max, data, f):
    W = data.draw(st.integers(1, T_max - 1))
    opt = make_opt(lrs)
    sched = AdjustableCosineLR(opt, T_max, eta_min, warmup_steps=W, warmup_start_factor=f)
    ref_opt = make_opt(lrs)
    ref = sequential_idiom(ref_opt, T_max, eta_min, W, f)
    closed = CosineAnnealingLR(make_opt(lrs), T_max - W, eta_min)
    assert sched.get_last_lr() == ref.get_last_lr()
    amp = [abs(b - eta_min) for b in lrs]
    for t in range(1, 2 * T_max + 1):
        step_both(sched, ref)
        if t <= W:  # the ramp and the hand-over step are bit for bit
            assert sched.get_last_lr() == ref.get_last_lr()
        # the cosine is torch's closed form; its recursion agrees to 1e-11
        if t >= W:
            assert sched.get_last_lr() == torch_closed_form(closed, t - W)
        assert near(sched.get_last_lr(), ref.get_last_lr(), amp, 1e-11)


def test_warmup_with_restarts_follows_sequential_idiom():
    opt, ref_opt = make_opt([0.1, 0.02]), make_opt([0.1, 0.02])
    sched = AdjustableCosineLR(opt, 8, 0.001, warmup_steps=3, restarts=True, T_mult=2)
    ref = SequentialLR(
        ref_opt,
        [
            LinearLR(ref_opt, start_factor=1 / 3, total_iters=3),
            CosineAnnealingWarmRestarts(ref_opt, 5, 2, 0.001),
        ],
        milestones=[3],
    )
    for _ in range(80):
        assert sched.get_last_lr() == ref.get_last_lr()
        step_both(sched, ref)


def test_last_epoch_and_optimizer_stay_in_step():
    opt = make_opt([0.1])
    sched = AdjustableCosineLR(opt, 10)
    for t in range(1, 5):
        opt.step()
        sched.step()
        assert sched.last_epoch == sched.schedule.step == t
    assert opt.param_groups[0]["initial_lr"] == 0.1
    assert sched.base_lrs == [0.1]


def test_tensor_learning_rates_are_filled_in_place():
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=torch.tensor(0.1))
    sched = AdjustableCosineLR(opt, 4)
    lr = opt.param_groups[0]["lr"]
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr
    assert float(lr) == pytest.approx(sched.lr_at(1)[0])


def test_drives_a_real_training_loop():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = AdjustableCosineLR(opt, 20, 1e-4, warmup_steps=2)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    seen = []
    for step in range(20):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step == 9:
            sched.reanneal(steps=5)
        seen.append(opt.param_groups[0]["lr"])
    assert seen[-1] == 1e-4
    assert all(a >= 0 for a in seen)
