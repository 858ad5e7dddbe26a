"""schedule: the LR does not move, or changes abruptly without a recorded adjustment."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cosinetui.diagnostics.common import finite
from cosinetui.diagnostics.rule import Rule
from cosinetui.events import EpochEnd


@dataclass(frozen=True)
class ScheduleConfig:
    flat_epochs: int = 5
    flat_fraction: float = 0.5  # holding at the floor is by design; flat above half the peak is not
    jump_fraction: float = 0.5  # one-step LR change, as a fraction of the peak LR
    reanneal_epochs: int = 3


class ScheduleRule(Rule):
    kind = "schedule"

    def __init__(self, ctx, config: ScheduleConfig) -> None:
        super().__init__(ctx, config)
        self.flat = 0
        self.jumps = 0
        self.decreased = False

    def on_epoch(self, record: EpochEnd, grace: bool) -> None:
        cfg, ctx, lr, e = self.config, self.ctx, record.lr, record.epoch
        prev_rec = ctx.prev
        prev = prev_rec.lr if prev_rec is not None and prev_rec.epoch == e - 1 else None
        if not finite(lr) or prev is None or not finite(prev):
            return
        if lr < prev * (1 - 1e-9):
            self.decreased = True
        if abs(lr - prev) <= 1e-12 + 1e-9 * abs(lr):
            self.flat += 1
        else:
            self.flat = 0
            ctx.close("schedule-flat")
        if self.flat + 1 >= cfg.flat_epochs and lr >= cfg.flat_fraction * ctx.peak_lr:
            left = ctx.run.epochs - e if ctx.run is not None else 0
            suggestion, action = ctx.reanneal(left if left > 0 else cfg.reanneal_epochs)
            msg = f"LR has stayed at {lr:.3g} for {self.flat + 1} epochs: the schedule is not moving"
            ctx.report("schedule-flat", "schedule", "warning", msg, suggestion, action)
        # The largest one-step change: between batches when their LRs are recorded, else
        # between epochs. A cosine over E epochs itself moves by up to about pi / (2E) of its
        # peak an epoch; twice that is the least a change must be to count as abrupt.
        before, after = prev, lr
        lrs = ctx.history.lrs
        first = prev_rec.step if prev_rec is not None else 0
        if record.step and first and record.step <= len(lrs) and record.step - first > 1:
            seg = lrs[first - 1 : record.step]
            i = max(range(1, len(seg)), key=lambda k: abs(seg[k] - seg[k - 1]))
            before, after = seg[i - 1], seg[i]
            planned = 0
        else:
            planned = ctx.run.epochs if ctx.run is not None else 0
        if not (finite(before) and finite(after)):
            return
        if after < before:
            self.decreased = True
        jump = max(cfg.jump_fraction, math.pi / planned if planned else 0.0)
        up = after > before
        if (
            abs(after - before) >= jump * ctx.peak_lr
            and e not in ctx.explained_epochs
            and (not up or self.decreased)  # a warmup ramp is not a jump
            and not (up and ctx.planned_restarts())
        ):
            self.jumps += 1
            msg = f"LR {'jumped' if up else 'dropped'} from {before:.3g} to {after:.3g} at epoch {e} with no recorded schedule change"
            if self.jumps > 1:
                msg += f" ({self.jumps} such changes)"
            if up:
                msg += "; a warm restart? the loss bump after it is treated as expected"
            ctx.report("schedule-jump", "schedule", "info" if up else "warning", msg, "check the scheduler's configuration")
