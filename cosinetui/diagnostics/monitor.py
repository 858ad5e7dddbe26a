"""The Monitor: feeds a run's batches and epochs, in the order they happened, to one rule per
alert kind over a shared RunContext, and hands back the alerts that are new or changed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cosinetui.diagnostics.common import finite
from cosinetui.diagnostics.context import ContextConfig, RunContext
from cosinetui.diagnostics.divergence import DivergenceConfig, DivergenceRule
from cosinetui.diagnostics.instability import InstabilityConfig, InstabilityRule
from cosinetui.diagnostics.nan import NanConfig, NanRule
from cosinetui.diagnostics.overfitting import OverfittingConfig, OverfittingRule
from cosinetui.diagnostics.plateau import PlateauConfig, PlateauRule
from cosinetui.diagnostics.rule import Rule
from cosinetui.diagnostics.schedule import ScheduleConfig, ScheduleRule
from cosinetui.events import Alert, EpochEnd


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Thresholds, one section per rule; defaults and reasons in docs/diagnostics.md."""

    context: ContextConfig = field(default_factory=ContextConfig)
    nan: NanConfig = field(default_factory=NanConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    instability: InstabilityConfig = field(default_factory=InstabilityConfig)
    overfitting: OverfittingConfig = field(default_factory=OverfittingConfig)
    plateau: PlateauConfig = field(default_factory=PlateauConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


class Monitor:
    """Incremental: ``update(history)`` looks only at what is new since the previous call (plus
    bounded windows) and returns the alerts raised, escalated or updated by it."""

    def __init__(self, config: DiagnosticsConfig | None = None) -> None:
        self.config = cfg = config or DiagnosticsConfig()
        self.ctx = ctx = RunContext(cfg.context)
        # Epoch order matters: the schedule rule sees the LR first; divergence before the rules
        # that stand down while it is open.
        self.rules: list[Rule] = [
            ScheduleRule(ctx, cfg.schedule),
            NanRule(ctx, cfg.nan),
            DivergenceRule(ctx, cfg.divergence),
            InstabilityRule(ctx, cfg.instability),
            OverfittingRule(ctx, cfg.overfitting),
            PlateauRule(ctx, cfg.plateau),
        ]
        self._on_batch = [r.on_batch for r in self.rules if r.overrides("on_batch")]
        self._on_bad_batch = [r.on_bad_batch for r in self.rules if r.overrides("on_bad_batch")]
        self._instability = next(r for r in self.rules if isinstance(r, InstabilityRule))
        self._emitted: dict[str, Alert] = {}
        self._batch_pos = 0
        self._epoch_pos = 0
        self._change_pos = 0
        self._pending: list[tuple[int, Any]] = []  # (global step, change) not yet reached
        # The current run of LR increases: its first and latest step (epoch without batches).
        self._streak_start = -(10**9)
        self._last_increase = -(10**9)

    # ------------------------------------------------------------------ public

    def update(self, history: Any) -> list[Alert]:
        """Process what is new in ``history``; return alerts raised, escalated or updated.

        Raised and escalated alerts come back on the call that finds them; other updates
        (fresher numbers) at most once per epoch end, so a live UI is not flooded.
        """
        ctx = self.ctx
        ctx.history = history
        if history.run is not None and history.run is not ctx.run:
            ctx.run = history.run
            # A resume truncates the history back to its checkpoint; continue from there.
            self._batch_pos = min(self._batch_pos, history.run.global_step)
            self._epoch_pos = min(self._epoch_pos, history.run.start_epoch)
        self._batch_pos = min(self._batch_pos, len(history.losses))
        self._epoch_pos = min(self._epoch_pos, len(history.epochs))
        # A change takes effect at its step: it is applied when the batches (or, without
        # batches, the epochs) reach it, so that live and offline see it at the same point.
        for change in history.schedule_changes[self._change_pos :]:
            self._pending.append((self._global_step(change), change))
        self._pending.sort(key=lambda p: p[0])
        self._change_pos = len(history.schedule_changes)
        ended = False
        for record in history.epochs[self._epoch_pos :]:
            if record.step > self._batch_pos:
                self._batches(history, min(record.step, len(history.losses)))
            self._end_epoch(record)
            ended = True
        self._epoch_pos = len(history.epochs)
        self._batches(history, len(history.losses))
        out = []
        for key, alert in ctx.alerts.items():
            before = self._emitted.get(key)
            if before is None or before.severity != alert.severity or (ended and before != alert):
                self._emitted[key] = alert
                out.append(alert)
        return out

    def alerts(self) -> list[Alert]:
        """Every episode so far, in its latest state, in the order raised."""
        return list(self.ctx.alerts.values())

    # ------------------------------------------------------------------ LR increases

    def _lr_increase(self, step: int | None, epoch: int) -> None:
        """An LR increase grants a grace window, but a run of increases (a ramp) only for a
        bounded time: it must never hide a loss that stays up after it."""
        ctx = self.ctx
        length = ctx.grace_length()
        if step is not None:
            last, self._last_increase = self._last_increase, step
            if step - last <= length:  # the same run of increases (a ramp, a warmup)
                if step < self._streak_start + 2 * length:
                    ctx.grace_until = max(ctx.grace_until, step + length)
                    ctx.increase_epochs.add(epoch)
                return
            self._streak_start = step
            ctx.grace_until = step + length
        else:
            last, self._last_increase = self._last_increase, epoch
            if epoch - last <= 1:
                if epoch < self._streak_start + 2:
                    ctx.increase_epochs.add(epoch)
                return
            self._streak_start = epoch
        ctx.increase_epochs.add(epoch)
        for rule in self.rules:
            rule.on_lr_increase(step, epoch)

    def _global_step(self, change: Any) -> int:
        ctx = self.ctx
        if ctx.run is not None and ctx.run.interval == "batch":
            return change.step
        return change.step * ctx.steps_per_epoch()

    def _apply_pending(self, before: int) -> None:
        while self._pending and self._pending[0][0] < before:
            self._schedule_change(self._pending.pop(0)[1])

    def _schedule_change(self, change: Any) -> None:
        ctx = self.ctx
        run, spe = ctx.run, ctx.steps_per_epoch()
        if run is not None and run.interval == "batch":
            step: int | None = change.step
            epoch = change.step // spe + 1 if spe else ctx.epoch
        else:
            epoch = change.step + 1
            step = change.step * spe if spe else None
        ctx.explained_epochs.update((epoch, epoch + 1))
        raised = change.lrs and ctx.last_lr is not None and change.lrs[0] > ctx.last_lr
        if change.op == "restart" or raised:
            self._lr_increase(step, epoch)

    # ------------------------------------------------------------------ batches

    def _batches(self, history: Any, end: int) -> None:
        ctx = self.ctx
        losses, lrs = history.losses, history.lrs
        n_lrs = len(lrs)
        alpha = ctx.config.ema_alpha
        on_batch, on_bad = self._on_batch, self._on_bad_batch
        pending = self._pending
        # The norm before clipping, at each optimizer step of a max_grad_norm run (NaN between
        # steps of an accumulation); absent from every other run, which then pays nothing.
        norms = history.scalars.get("grad_norm") if hasattr(history, "scalars") else None
        n_norms = len(norms) if norms else 0
        on_norm = self._instability.on_grad_norm
        for i in range(self._batch_pos, end):
            if pending and pending[0][0] <= i:
                self._apply_pending(i + 1)
            lr = lrs[i] if i < n_lrs else math.nan
            if lr == lr and not math.isinf(lr):
                last = ctx.last_lr
                if last is not None and lr > last * (1 + 1e-9):
                    self._lr_increase(i, ctx.epoch)
                ctx.last_lr = lr
                if lr > ctx.peak_lr:
                    ctx.peak_lr = lr
            x = losses[i]
            if x != x or math.isinf(x):
                for f in on_bad:
                    f(i, x)
                continue
            ctx.finite_batches += 1
            ctx.ema = (1 - alpha) * ctx.ema + alpha * x
            ctx.ema_weight = (1 - alpha) * ctx.ema_weight + alpha
            ctx.level = ctx.ema / ctx.ema_weight
            if len(ctx.first) < 5:
                ctx.first.append(x)
                ctx.start = min(ctx.first)
            grace = i < ctx.grace_until
            for f in on_batch:
                f(i, x, grace)
            if i < n_norms:
                g = norms[i]  # type: ignore[index]
                if g == g and not math.isinf(g):
                    on_norm(i, g, grace)
        self._batch_pos = max(self._batch_pos, end)

    # ------------------------------------------------------------------ epochs

    def _end_epoch(self, record: EpochEnd) -> None:
        ctx, e = self.ctx, record.epoch
        if self._pending:
            self._apply_pending(record.step or 1 << 62)
        ctx.epoch = e
        lr, prev = record.lr, ctx.prev
        if finite(lr):
            ctx.peak_lr = max(ctx.peak_lr, lr)
            prev_lr = prev.lr if prev is not None and prev.epoch == e - 1 else None
            # Without batch LRs the epoch records are the only LR series.
            if ctx.last_lr is None and prev_lr is not None and finite(prev_lr) and lr > prev_lr * (1 + 1e-9):
                self._lr_increase(None, e)
        t, v = record.train_loss, record.val_loss
        if v is not None and finite(v):
            ctx.seen_val = True
        if finite(t):
            if ctx.first_train is None:
                ctx.first_train = t
            elif e == 2 and t > 0 and ctx.first_train >= ctx.config.absurd_start * t:
                # An absurd first epoch is itself the alert and must not become the baseline.
                ctx.absurd_first, ctx.first_train = ctx.first_train, t
        grace = ctx.in_grace(e)
        ctx.done = e
        for rule in self.rules:
            rule.on_epoch(record, grace)
        ctx.prev = record
        ctx.epoch = e + 1
