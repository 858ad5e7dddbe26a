"""Each rule on its own: its config section changes its verdict, and the shared context's
facts (noise, grace windows, the starting loss) behave as the rules rely on."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from cosinetui.diagnostics import (
    DiagnosticsConfig,
    InstabilityConfig,
    Monitor,
    OverfittingConfig,
    PlateauConfig,
    ScheduleConfig,
    diagnose,
)
from cosinetui.diagnostics.common import falling, relative_noise
from cosinetui.diagnostics.rule import Rule
from cosinetui.events import BatchChunk, EpochEnd, RunStarted, ScheduleChanged
from cosinetui.history import History
from tests.unit.test_diagnostics import (
    HEALTHY_TRAIN,
    HEALTHY_VAL,
    decaying,
    per_epoch,
    synthetic_run,
)


def kinds(events, config=None) -> list[str]:
    return [a.kind for a in diagnose(History.from_events(events), config)]


# ----------------------------------------------------------------------------- shared facts


def test_noise_is_measured_on_the_log_so_a_fast_fall_is_not_noise() -> None:
    smooth_fall = [2.0 * 0.6**i for i in range(8)]
    assert relative_noise(smooth_fall) < 1e-9
    rng = random.Random(0)
    noisy = [1.0 * math.exp(0.1 * rng.gauss(0, 1)) for _ in range(8)]
    assert 0.03 < relative_noise(noisy) < 0.3


def test_a_slow_steady_fall_below_the_step_noise_is_falling() -> None:
    rng = random.Random(1)
    slow = [1.0 * 0.98**i * math.exp(0.005 * rng.gauss(0, 1)) for i in range(7)]
    flat = [1.0 * math.exp(0.03 * rng.gauss(0, 1)) for _ in range(7)]
    assert falling(slow) and not falling(flat)


def test_every_rule_has_its_own_config_section_and_the_monitor_dispatches_to_each() -> None:
    monitor = Monitor()
    names = {type(r).__name__ for r in monitor.rules}
    assert names == {"NanRule", "DivergenceRule", "InstabilityRule", "OverfittingRule", "PlateauRule", "ScheduleRule"}
    assert all(isinstance(r, Rule) and r.config is getattr(monitor.config, r.kind) for r in monitor.rules)
    # Only rules that look at batches are called per batch.
    assert {f.__self__.kind for f in monitor._on_batch} == {"divergence", "instability"}


def test_a_long_lr_ramp_grants_grace_only_at_its_start() -> None:
    # A per-batch ramp over 8 epochs: grace is at most two epochs from its first increase.
    events = synthetic_run(10, HEALTHY_TRAIN, HEALTHY_VAL, lr=lambda t: 0.01 * 100 ** min(1.0, t / 8))
    monitor = Monitor()
    monitor.update(History.from_events(events))
    assert monitor.ctx.grace_until <= 3 * 50 + 1


# ----------------------------------------------------------------------------- rules


def test_divergence_after_an_lr_increase_that_does_not_recover() -> None:
    # A user's reanneal multiplies the LR by 10 at epoch 8; the loss goes back to its start
    # level and stays: the increase excuses a bump, not that.
    def train(t: float) -> float:
        return HEALTHY_TRAIN(t) if t < 8 else 2.0

    change = ScheduleChanged(8, "reanneal", {"factor": 10.0}, {}, (1.0,))
    lr = per_epoch(lambda t: 0.1 if t < 8 else 1.0)
    for batches in (True, False):
        events = synthetic_run(16, train, lambda e: 2.1 if e > 8 else HEALTHY_VAL(e), lr=lr,
                               changes=(change,), batches=batches)
        assert "divergence" in kinds(events), batches


def test_a_bump_after_an_lr_increase_that_recovers_is_no_divergence() -> None:
    def train(t: float) -> float:
        return HEALTHY_TRAIN(t) + (1.2 * math.exp(-(t - 8) / 1.2) if t >= 8 else 0.0)

    change = ScheduleChanged(8, "restart", {"steps": 8}, {}, (0.1,))
    lr = per_epoch(lambda t: 0.1 * (1 + math.cos(math.pi * (t % 8) / 8)) / 2)
    events = synthetic_run(16, train, lambda e: train(e - 0.5) + 0.1, lr=lr, changes=(change,))
    assert "divergence" not in kinds(events)


def test_instability_first_epoch_explosion_is_the_alert_not_the_baseline() -> None:
    events = [RunStarted("x", "", "cpu", "", 0, 8, 10, "epoch", {})]
    rows = [(1.8e12, 2.3), (2.31, 2.4), (2.30, 1.2), (2.30, 2.4), (2.31, 1.1), (2.29, 2.5), (2.3, 1.2), (2.3, 2.3)]
    events += [EpochEnd(e, t, v, 8.0, step=10 * e) for e, (t, v) in enumerate(rows, 1)]
    alerts = diagnose(History.from_events(events))
    inst = [a for a in alerts if a.kind == "instability"]
    assert inst and inst[0].epoch == 1 and "exploded at the start" in inst[0].message
    assert "overfitting" not in [a.kind for a in alerts]


def test_instability_jump_threshold_is_its_config() -> None:
    events = synthetic_run(14, HEALTHY_TRAIN, lambda e: HEALTHY_VAL(e) * (1.6 if e % 2 else 1))
    assert "instability" in kinds(events)
    strict = DiagnosticsConfig(instability=InstabilityConfig(jump_rel=0.7, jump_max=0.7))
    assert "instability" not in kinds(events, strict)


def test_overfitting_gl_bar_is_its_config_and_a_new_best_ends_the_episode() -> None:
    def val(e: float) -> float:  # falling to 0.5, 8% up for three epochs, then a new best
        return 0.5 + 0.05 * (7 - e) if e < 8 else (0.54 if e <= 10 else 0.45)

    events = synthetic_run(16, decaying(2.3, 0.02, 4), val, val_noise=0.002, batches=False)
    assert "overfitting" not in kinds(events)  # 8% is under the default GL bar (10)
    loose = DiagnosticsConfig(overfitting=OverfittingConfig(gl_warning=5.0, gl_noise_k=0.0))
    alerts = diagnose(History.from_events(events), loose)
    over = [a for a in alerts if a.kind == "overfitting"]
    assert over and "val made a new best" in over[0].message


def test_overfitting_stall_at_the_end_of_an_anneal_is_not_raised() -> None:
    # Val flattens while train still falls, but the LR is already near its floor.
    lr = per_epoch(lambda t: 0.1 * (1 + math.cos(math.pi * t / 20)) / 2)
    events = synthetic_run(20, decaying(2.3, 0.005, 3), lambda e: max(0.07, HEALTHY_VAL(e) - 0.33),
                           lr=lr, batches=False)
    alerts = diagnose(History.from_events(events))
    late = [a for a in alerts if a.kind == "overfitting" and a.epoch >= 15]
    assert not late


def test_plateau_patience_is_its_config() -> None:
    events = synthetic_run(20, decaying(2.3, 0.8, 0.5), decaying(2.3, 0.9, 0.5),
                           lr=per_epoch(lambda t: 0.1 * (1 + math.cos(math.pi * t / 60)) / 2))
    assert "plateau" in kinds(events)
    assert "plateau" not in kinds(events, DiagnosticsConfig(plateau=PlateauConfig(patience=30)))


def test_schedule_jump_uses_batch_lrs_on_a_short_per_batch_warmup_cosine() -> None:
    steps = 100

    def lr(t: float) -> float:  # t in epochs; 2 epochs of 50 batches
        s = t * 50
        return 0.1 * (s + 1) / 10 if s < 10 else 0.05 * (1 + math.cos(math.pi * (s - 10) / (steps - 10)))

    events = synthetic_run(2, HEALTHY_TRAIN, HEALTHY_VAL, lr=lr, interval="batch")
    assert "schedule" not in kinds(events)
    cfg = DiagnosticsConfig(schedule=replace(ScheduleConfig(), jump_fraction=0.001))
    assert "schedule" in kinds(events, cfg)


def test_nan_rule_on_a_chunk() -> None:
    events = [RunStarted("x", "", "cpu", "", 0, 2, 4, "epoch", {})]
    events.append(BatchChunk(1, 0, (1.0, math.nan, 1.0, 1.0), (0.1,) * 4, 4))
    (alert,) = diagnose(History.from_events(events))
    assert alert.kind == "nan" and alert.step == 1 and alert.suggestion == "halve the LR before resuming"


def _with_grad_norms(events, norm) -> list:
    """The run's chunks with a ``grad_norm`` scalar: ``norm(step)`` (NaN: not recorded)."""
    out = []
    for ev in events:
        if isinstance(ev, BatchChunk):
            steps = range(ev.first_step, ev.first_step + len(ev.losses))
            ev = replace(ev, scalars={"grad_norm": [norm(s) for s in steps]})
        out.append(ev)
    return out


def test_instability_from_a_gradient_norm_explosion_that_clipping_keeps_out_of_the_loss() -> None:
    rng = random.Random(3)
    healthy = synthetic_run(10, HEALTHY_TRAIN, HEALTHY_VAL)

    def fitted(step: int) -> float:
        # Heavy tails, as a small-batch run that fits its data has them: mostly small norms,
        # now and then a hard batch at 15x the starting norm. No alert.
        return 1.0 * math.exp(0.5 * rng.gauss(0, 1)) * (15.0 if rng.random() < 0.03 else 1.0)

    assert "instability" not in kinds(_with_grad_norms(healthy, fitted))

    def exploding(step: int) -> float:  # from step 300 on the gradients blow up; clipped
        return fitted(step) * (1.0 if step < 300 else 10.0 ** min(4, (step - 300) / 20))

    alerts = diagnose(History.from_events(_with_grad_norms(healthy, exploding)))
    inst = [a for a in alerts if a.kind == "instability"]
    assert inst and "gradient norm exploded" in inst[0].message and "before clipping" in inst[0].message
    assert 300 <= inst[0].step < 360
    # Accumulation records a norm at each optimizer step only: NaN between them is no data.
    every_4th = _with_grad_norms(healthy, lambda s: exploding(s) if s % 4 == 0 else math.nan)
    assert "instability" in kinds(every_4th)
    # The threshold is the rule's config.
    lax = DiagnosticsConfig(instability=InstabilityConfig(grad_absurd=1e6))
    assert "instability" not in kinds(_with_grad_norms(healthy, exploding), lax)


def test_a_run_that_never_gets_below_its_start_is_not_learning() -> None:
    # Broken in its first steps (the loss rises 40%), then falling slowly back: everything
    # seems to improve, but after 4 epochs nothing has been learned.
    def loss(t: float) -> float:  # 2.3 for the first five batches (of 50 an epoch)
        return 2.3 if t < 0.1 else 2.3 * (1.4 - 0.05 * t)

    broken = synthetic_run(8, loss, noise=0.1)
    alerts = [a for a in diagnose(History.from_events(broken)) if a.kind == "plateau"]
    assert alerts and alerts[0].epoch == 4 and "LR too high" in alerts[0].message
    assert alerts[0].action is not None  # the fix: halve the LR
    # Flat from the start (an LR too small to move it): asked to check, no fix offered.
    flat = synthetic_run(8, lambda t: 2.3, noise=0.1, lr=per_epoch(lambda t: 1e-6))
    alerts = [a for a in diagnose(History.from_events(flat)) if a.kind == "plateau"]
    assert alerts and "check the LR" in alerts[0].message and alerts[0].action is None
    # Epoch records alone have no starting loss: not judged.
    assert "no lower than where" not in " ".join(
        a.message for a in diagnose(History.from_events([e for e in broken if not isinstance(e, BatchChunk)]))
    )


def test_no_progress_is_judged_only_after_a_warmup_ends() -> None:
    ramp = per_epoch(lambda t: 0.1 * min(1.0, (t + 1) / 6))  # 6 epochs of warmup
    slow = synthetic_run(9, lambda t: 2.3 if t < 6 else 2.3 * 0.8 ** (t - 5), noise=0.1, lr=ramp)
    assert "plateau" not in kinds(slow)
