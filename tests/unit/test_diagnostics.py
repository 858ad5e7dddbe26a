"""Detectors on synthetic runs with seeded noise: each must fire when it should and not otherwise."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cosinetui.diagnostics import DiagnosticsConfig, Monitor, diagnose, format_alerts
from cosinetui.events import Alert, BatchChunk, EpochEnd, Event, RunStarted, ScheduleChanged
from cosinetui.history import History

Curve = Callable[[float], float]


def cosine(peak: float, epochs: float, floor: float = 0.0) -> Curve:
    return lambda t: floor + (peak - floor) * (1 + math.cos(math.pi * min(t, epochs) / epochs)) / 2


def per_epoch(curve: Curve) -> Curve:
    """An LR stepped once per epoch (interval "epoch")."""
    return lambda t: curve(math.floor(t))


def decaying(start: float, end: float, tau: float) -> Curve:
    return lambda t: end + (start - end) * math.exp(-t / tau)


DEFAULT_LR = per_epoch(cosine(0.1, 20))


def synthetic_run(
    epochs: int,
    train: Curve,
    val: Curve | None = None,
    lr: Curve = DEFAULT_LR,
    steps_per_epoch: int = 50,
    noise: float = 0.3,
    val_noise: float = 0.02,
    seed: int = 0,
    batches: bool = True,
    interval: str = "epoch",
    nan_steps: tuple[int, ...] = (),
    changes: tuple[ScheduleChanged, ...] = (),
    chunk: int = 25,
) -> list[Event]:
    """Events of a run: batch losses are ``train(t)`` (t in fractional epochs) times lognormal
    noise of ``noise`` sigma; val is ``val(epoch)`` with its own noise; epoch train loss is the
    mean of the epoch's batch losses (NaN if one is)."""
    rng = random.Random(seed)
    events: list[Event] = [
        RunStarted("synthetic", "", "cpu", "", 1, epochs, steps_per_epoch, interval, {})
    ]
    pending = {c.step: c for c in changes}
    step = 0
    for e in range(1, epochs + 1):
        if interval == "epoch" and e - 1 in pending:
            events.append(pending.pop(e - 1))
        losses, lrs = [], []
        for b in range(steps_per_epoch):
            t = e - 1 + b / steps_per_epoch
            x = train(t) * math.exp(noise * rng.gauss(0, 1))
            losses.append(math.nan if step + b in nan_steps else x)
            lrs.append(lr(t))
        if batches:
            for i in range(0, steps_per_epoch, chunk):
                events.append(
                    BatchChunk(
                        e,
                        step + i,
                        tuple(losses[i : i + chunk]),
                        tuple(lrs[i : i + chunk]),
                        min(i + chunk, steps_per_epoch),
                    )
                )
        step += steps_per_epoch
        v = None if val is None else val(e) * math.exp(val_noise * rng.gauss(0, 1))
        events.append(EpochEnd(e, sum(losses) / len(losses), v, lrs[-1], step=step))
    return events


def history_of(events: list[Event]) -> History:
    return History.from_events(events)


def kinds(alerts: list[Alert]) -> list[str]:
    return [a.kind for a in alerts]


def only(alerts: list[Alert], kind: str) -> Alert:
    found = [a for a in alerts if a.kind == kind]
    assert len(found) == 1, format_alerts(alerts)
    return found[0]


HEALTHY_TRAIN = decaying(2.3, 0.3, 4)
HEALTHY_VAL = decaying(2.3, 0.4, 4)


def live(events: list[Event], config: DiagnosticsConfig | None = None) -> list[list[Alert]]:
    """Feed events one at a time as the trainer does; the alerts each update returned."""
    history, monitor, calls = History(), Monitor(config), []
    for event in events:
        history.apply(event)
        if isinstance(event, (BatchChunk, EpochEnd)):
            returned = monitor.update(history)
            calls.append(returned)
            history.extend(returned)
    return calls


# ----------------------------------------------------------------------------- healthy runs


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noise", [0.3, 0.6])
def test_noisy_small_batch_training_raises_nothing(seed: int, noise: float) -> None:
    events = synthetic_run(20, HEALTHY_TRAIN, HEALTHY_VAL, noise=noise, val_noise=0.03, seed=seed)
    assert diagnose(history_of(events)) == []


def test_end_of_anneal_flattening_is_not_a_plateau() -> None:
    # Both losses stop improving at epoch 16 of 24 and stay flat while the LR anneals to 0.
    def flattening(floor: float) -> Curve:
        return lambda t: floor + 1.8 * max(0.0, (16 - t) / 16) ** 2

    events = synthetic_run(24, flattening(0.5), flattening(0.6), lr=per_epoch(cosine(0.1, 24)))
    assert diagnose(history_of(events)) == []


def test_flat_loss_while_the_lr_is_high_is_a_plateau() -> None:
    events = synthetic_run(
        20, decaying(2.3, 0.8, 0.5), decaying(2.3, 0.9, 0.5), lr=per_epoch(cosine(0.1, 60))
    )
    alerts = diagnose(history_of(events))
    plateau = only(alerts, "plateau")
    assert kinds(alerts) == ["plateau"]
    assert plateau.epoch <= 15
    assert plateau.action == {"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}
    assert "have not improved by" in plateau.message and "of its peak" in plateau.message
    assert plateau.severity == "warning"  # escalated once the stall lasted twice the patience


def _sgdr(period: int, peak: float = 0.1) -> Curve:
    return per_epoch(lambda t: cosine(peak, period)(t % period))


def _bumped(base: Curve, restarts: tuple[int, ...], size: float) -> Curve:
    def curve(t: float) -> float:
        bump = sum(size * math.exp(-(t - r) / 1.5) for r in restarts if t >= r)
        return base(t) + bump

    return curve


def test_warm_restarts_bump_the_loss_without_alerts() -> None:
    restarts = (8, 16)
    changes = tuple(ScheduleChanged(r, "restart", {"steps": 8}, {}, (0.1,)) for r in restarts)
    events = synthetic_run(
        24,
        _bumped(decaying(2.3, 0.2, 3), restarts, 1.5),
        lambda e: _bumped(decaying(2.3, 0.3, 3), restarts, 1.5)(e - 0.5),
        lr=_sgdr(8),
        changes=changes,
    )
    assert diagnose(history_of(events)) == []


def test_an_unrecorded_warm_restart_is_only_noted() -> None:
    restarts = (8, 16)
    events = synthetic_run(
        24,
        _bumped(decaying(2.3, 0.2, 3), restarts, 1.5),
        lambda e: _bumped(decaying(2.3, 0.3, 3), restarts, 1.5)(e - 0.5),
        lr=_sgdr(8),
    )
    alerts = diagnose(history_of(events))
    schedule = only(alerts, "schedule")
    assert kinds(alerts) == ["schedule"]
    assert schedule.severity == "info" and schedule.epoch == 9
    assert "2 such changes" in schedule.message


def test_one_epoch_val_blip_is_not_a_trend() -> None:
    events = synthetic_run(20, HEALTHY_TRAIN, lambda e: HEALTHY_VAL(e) * (1.5 if e == 9 else 1))
    assert diagnose(history_of(events)) == []


# ----------------------------------------------------------------------------- NaN


def test_a_single_nan_batch_is_reported_once_on_its_chunk() -> None:
    events = synthetic_run(20, HEALTHY_TRAIN, HEALTHY_VAL, nan_steps=(537,))
    alerts = diagnose(history_of(events))
    assert kinds(alerts) == ["nan"]
    nan = alerts[0]
    assert (nan.severity, nan.epoch, nan.step) == ("critical", 11, 537)
    assert "step 537" in nan.message and "1 non-finite batch loss so far" in nan.message
    assert nan.action == {"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}

    # Live: the update after the chunk holding step 537 returns it, and nothing else ever does.
    history, monitor = History(), Monitor()
    for event in events:
        history.apply(event)
        returned = monitor.update(history)
        if isinstance(event, BatchChunk) and event.first_step <= 537 < event.first_step + 25:
            assert [a.kind for a in returned] == ["nan"]
            break
        assert returned == []


def test_nan_epoch_records_without_batches() -> None:
    events = synthetic_run(12, HEALTHY_TRAIN, HEALTHY_VAL, batches=False)
    events[7] = EpochEnd(7, math.nan, math.nan, 0.05, step=350)
    alerts = diagnose(history_of(events))
    nan = only(alerts, "nan")
    assert nan.epoch == 7 and nan.step is None
    assert "train and val losses are not a number" in nan.message


# ----------------------------------------------------------------------------- divergence


def _explodes_and_sticks(at: float = 6.0) -> Curve:
    def curve(t: float) -> float:
        if t < at:
            return HEALTHY_TRAIN(t)
        if t < at + 0.4:
            return 40.0
        return 2.6

    return curve


def test_a_loss_that_explodes_and_sticks_above_its_start_is_critical_divergence() -> None:
    events = synthetic_run(
        12, _explodes_and_sticks(6.0), lambda e: 3.0 if e > 6 else HEALTHY_VAL(e)
    )
    alerts = diagnose(history_of(events))
    div = only(alerts, "divergence")
    assert div.severity == "critical"
    assert div.epoch == 7 and 300 <= div.step < 320  # within the epoch it started
    assert div.action == {"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}
    assert "not below its starting value" in div.message
    assert "overfitting" not in kinds(alerts) and "instability" not in kinds(alerts)


def test_divergence_is_caught_within_its_epoch_live() -> None:
    calls = live(synthetic_run(10, _explodes_and_sticks(6.0)))
    first = [(i, a) for i, c in enumerate(calls) for a in c if a.kind == "divergence"][0]
    # Epochs are two chunks and an EpochEnd: epoch 7's first chunk is call 18.
    assert first[0] in (18, 19) and first[1].epoch == 7


def test_both_losses_rising_together_is_divergence_not_overfitting() -> None:
    def rising(base: Curve) -> Curve:
        return lambda t: base(t) if t < 8 else base(8) * 1.15 ** (t - 8)

    events = synthetic_run(16, rising(HEALTHY_TRAIN), rising(HEALTHY_VAL), batches=False)
    alerts = diagnose(history_of(events))
    assert "overfitting" not in kinds(alerts)
    div = only(alerts, "divergence")
    assert div.epoch <= 11
    assert div.severity == "critical"  # twice its best by the end


def test_epoch_only_explosion() -> None:
    events = synthetic_run(12, _explodes_and_sticks(6.0), HEALTHY_VAL, batches=False)
    div = only(diagnose(history_of(events)), "divergence")
    assert div.epoch == 8 and div.severity == "critical"


# ----------------------------------------------------------------------------- overfitting


def test_val_rising_after_its_minimum_is_overfitting_within_a_few_epochs() -> None:
    def val(e: float) -> float:
        return HEALTHY_VAL(e) if e <= 10 else HEALTHY_VAL(10) * 1.04 ** (e - 10)

    events = synthetic_run(20, decaying(2.3, 0.02, 5), val, lr=per_epoch(cosine(0.1, 30)))
    calls = live(events)
    raised = [a for c in calls for a in c if a.kind == "overfitting"]
    assert raised and raised[0].epoch <= 15  # GL 10 (or 3x val noise) on two epochs
    assert raised[0].action == {"type": "adjust", "op": "reanneal", "args": {"steps": 3}}
    assert len({a.key for a in raised}) == 1  # one episode, updated and escalated
    final = only(diagnose(history_of(events)), "overfitting")
    assert final.severity == "critical" and final.key == raised[0].key
    assert "above its best" in final.message and "while train fell from" in final.message


def test_tiny_train_set_val_stalls_while_train_keeps_falling() -> None:
    val = lambda e: decaying(2.3, 0.8, 1.5)(e)  # noqa: E731 - flat at 0.8 from ~epoch 6
    events = synthetic_run(20, decaying(2.3, 0.02, 4), val, val_noise=0.02)
    alerts = diagnose(history_of(events))
    over = only(alerts, "overfitting")
    assert kinds(alerts) == ["overfitting"]
    assert 8 <= over.epoch <= 12
    assert "while train fell from" in over.message and "gap" in over.message


def test_epoch_only_log_overfitting() -> None:
    def val(e: float) -> float:
        return HEALTHY_VAL(e) if e <= 8 else HEALTHY_VAL(8) * 1.08 ** (e - 8)

    events = synthetic_run(14, decaying(2.3, 0.02, 4), val, batches=False)
    over = only(diagnose(history_of(events)), "overfitting")
    assert over.epoch in (10, 11)  # GL 5 or three times val's own noise, on two epochs


# ----------------------------------------------------------------------------- instability


def test_val_jumping_up_and_down_is_instability() -> None:
    events = synthetic_run(14, HEALTHY_TRAIN, lambda e: HEALTHY_VAL(e) * (1.6 if e % 2 else 1))
    alerts = diagnose(history_of(events))
    inst = only(alerts, "instability")
    assert inst.epoch <= 5 and inst.suggestion == "halve the LR"


def test_repeated_batch_spikes_are_instability() -> None:
    spikes = {300 + 37 * k for k in range(8)}
    base = HEALTHY_TRAIN

    def train(t: float) -> float:
        return base(t) * (8 if round(t * 50) in spikes else 1)

    events = synthetic_run(12, train, HEALTHY_VAL)
    inst = only(diagnose(history_of(events)), "instability")
    assert inst.epoch == 9 and inst.step == 300 + 37 * 4
    assert "5 loss spikes" in inst.message or "loss spikes" in inst.message


# ----------------------------------------------------------------------------- schedule


def test_constant_lr_is_a_schedule_warning() -> None:
    events = synthetic_run(10, HEALTHY_TRAIN, HEALTHY_VAL, lr=lambda t: 0.1)
    sched = only(diagnose(history_of(events)), "schedule")
    assert sched.epoch == 5 and sched.severity == "warning"
    assert "stayed at 0.1 for 10 epochs" in sched.message
    first = [a for call in live(events) for a in call][0]
    # Raised at the end of epoch 5 of 10: reanneal over the 5 epochs left.
    assert first.action == {"type": "adjust", "op": "reanneal", "args": {"steps": 5}}


def test_abrupt_lr_drop_is_a_schedule_warning() -> None:
    events = synthetic_run(
        12, HEALTHY_TRAIN, HEALTHY_VAL, lr=per_epoch(lambda t: 0.1 if t < 6 else 0.001)
    )
    sched = [a for a in diagnose(history_of(events)) if a.key.startswith("schedule:7")]
    assert (
        sched and sched[0].severity == "warning" and "dropped from 0.1 to 0.001" in sched[0].message
    )


# ----------------------------------------------------------------------------- live vs offline


@pytest.mark.parametrize("case", ["overfit", "explode", "nan"])
def test_live_and_offline_agree(case: str) -> None:
    events = {
        "overfit": synthetic_run(16, decaying(2.3, 0.02, 4), decaying(2.3, 0.8, 1.5)),
        "explode": synthetic_run(10, _explodes_and_sticks(5.0)),
        "nan": synthetic_run(6, HEALTHY_TRAIN, HEALTHY_VAL, nan_steps=(120, 121, 140)),
    }[case]
    latest: dict[str, Alert] = {}
    for returned in live(events):
        for alert in returned:
            before = latest.get(alert.key)
            if before is not None:  # an update never lowers the severity
                order = ["info", "warning", "critical"]
                assert order.index(alert.severity) >= order.index(before.severity)
            latest[alert.key] = alert
    assert list(latest.values()) == diagnose(history_of(events))


def test_format_alerts() -> None:
    assert "no warnings" in format_alerts([])
    alert = Alert("nan", "critical", 3, "train loss is not a number", "halve the LR", 120)
    text = format_alerts([alert])
    assert "CRITICAL" in text and "epoch 3, step 120" in text and "-> halve the LR" in text


def test_updates_look_only_at_new_batches() -> None:
    rng = random.Random(0)
    history, monitor = History(), Monitor()
    history.apply(RunStarted("big", "", "cpu", "", 1, 1000, 1000, "epoch", {}))
    history.losses.extend(1 + 0.3 * rng.random() for _ in range(100_000))
    history.lrs.extend([0.1] * 100_000)
    monitor.update(history)  # the one full pass
    seen: list[int] = []
    diverge = monitor._on_batch[-1]
    monitor._on_batch[-1] = lambda step, x, grace: (seen.append(step), diverge(step, x, grace))[1]
    for k in range(50):
        losses = tuple(1 + 0.3 * rng.random() for _ in range(50))
        history.apply(BatchChunk(101, len(history.losses), losses, (0.1,) * 50, 50 * (k + 1)))
        assert monitor.update(history) == []
    # Each batch is looked at once, when it is new: 2,500 batches, not 50 rescans of 100k.
    assert seen == list(range(100_000, 102_500))


loss_values = st.one_of(st.floats(0.0, 1e6), st.just(math.nan), st.just(math.inf))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(loss_values, st.one_of(st.none(), loss_values), st.floats(0.0, 10.0)),
        max_size=30,
    )
)
# A loss of exactly 0 before an LR increase (a ratio to 0 was a ZeroDivisionError).
@example([(0.0, None, 0.0), (math.nan, None, 1.0), (math.nan, None, 0.0), (0.0, None, 0.0),
          (math.nan, None, 0.0), (0.0, None, 0.0)])
def test_any_epoch_log_gives_well_formed_alerts(rows) -> None:
    events = [EpochEnd(i, t, v, lr) for i, (t, v, lr) in enumerate(rows, 1)]
    alerts = diagnose(History.from_events(events))
    assert len({a.key for a in alerts}) == len(alerts)
    for a in alerts:
        assert a.kind in ("overfitting", "instability", "nan", "divergence", "plateau", "schedule")
        assert a.severity in ("info", "warning", "critical") and 1 <= a.epoch <= len(rows)
        assert a.message and "\n" not in a.message
    assert format_alerts(alerts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(-5, 5), st.floats(1e-12, 1e6)), min_size=1, max_size=400))
def test_any_batch_losses_give_well_formed_alerts(losses):
    history = History()
    monitor = Monitor()
    step = 0
    for epoch, start in enumerate(range(0, len(losses), 50), 1):
        part = tuple(losses[start : start + 50])
        history.apply(BatchChunk(epoch, step, part, tuple(0.1 for _ in part), len(part)))
        step += len(part)
        monitor.update(history)
        history.apply(EpochEnd(epoch, sum(part) / len(part), None, 0.1, step=step))
        for alert in monitor.update(history):
            assert alert.kind in {"overfitting", "instability", "nan", "divergence", "plateau", "schedule"}
            assert alert.message
