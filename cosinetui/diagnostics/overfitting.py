"""overfitting: val rises after its minimum (Prechelt's GL), or stalls while train keeps
falling and the LR is still high; thresholds scale with the val curve's own noise."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from cosinetui.diagnostics.common import Best, finite, num, plural, relative_noise
from cosinetui.diagnostics.rule import Rule
from cosinetui.events import EpochEnd
from cosinetui.history import Ema


@dataclass(frozen=True)
class OverfittingConfig:
    gl_warning: float = 10.0  # generalization loss, percent above the best val loss ...
    gl_noise_k: float = 3.0  # ... and at least this many times val's own relative noise
    gl_critical: float = 20.0
    pq_alpha: float = 3.0  # GL / P_k above this is critical (training no longer pays)
    strip: int = 5  # Prechelt's k, epochs in a training strip
    persistence: int = 2  # epochs GL must hold
    patience: int = 4
    min_delta: float = 0.01  # relative improvement that counts ...
    noise_k: float = 1.5  # ... and at least this many times the curve's own relative noise
    train_drop: float = 0.5  # train halved since val's best (stalled criterion) ...
    gap_min: float = 0.25  # ... and val is this fraction above train (both criteria)
    lr_fraction: float = 0.25  # stalling below this fraction of the peak LR is the anneal's end
    reanneal_epochs: int = 3


class OverfittingRule(Rule):
    kind = "overfitting"

    def __init__(self, ctx, config: OverfittingConfig) -> None:
        super().__init__(ctx, config)
        self.val_min: tuple[float, int, float] | None = None  # (val, epoch, train then)
        self.val_best = Best(config.min_delta, config.noise_k)
        self.val_recent: deque[float] = deque(maxlen=8)
        self.val_ema = Ema(ctx.config.epoch_ema_alpha)
        self.gl_hits = 0
        self.quiet = 0
        self.strip: deque[float] = deque(maxlen=config.strip)

    def on_epoch(self, record: EpochEnd, grace: bool) -> None:
        cfg, ctx, e = self.config, self.ctx, record.epoch
        t, v = record.train_loss, record.val_loss
        if not (finite(t) and finite(v)) or (ctx.absurd_first is not None and e == 1):
            return
        assert v is not None
        smooth_v = self.val_ema.add(v)
        noise = relative_noise(self.val_recent)
        self.val_recent.append(v)
        self.strip.append(t)
        if self.val_min is None or v < self.val_min[0]:
            if ctx.is_open("overfitting") and self.val_min is not None:
                # The run disproved the episode: val made a new best.
                ctx.close("overfitting", f"ended at epoch {e}: val made a new best {num(v)}")
            self.val_min = (v, e, t)
        if grace:
            self.gl_hits = 0
            return
        self.val_best.update(smooth_v, e, v)
        best, best_epoch, train_then = self.val_min
        gl = 100 * (v / best - 1) if best > 0 else 0.0
        # Val above its best while train still falls is only overfitting once a real gap has
        # opened: with val within gap_min of train, a noisy val at a high LR looks the same.
        gap_open = v >= t * (1 + cfg.gap_min)
        gl_bar = max(cfg.gl_warning, cfg.gl_noise_k * 100 * noise)
        self.gl_hits = self.gl_hits + 1 if gl >= gl_bar and t < train_then and gap_open else 0
        rising = self.gl_hits >= cfg.persistence
        lr = record.lr
        annealed = finite(lr) and ctx.peak_lr > 0 and lr < cfg.lr_fraction * ctx.peak_lr
        stalled = (
            self.val_best.bad >= cfg.patience
            and e - best_epoch >= cfg.patience
            and best_epoch > 1  # epoch 1's train loss averages the epoch's own learning
            and t <= train_then * (1 - cfg.train_drop)
            and gap_open
            and not annealed  # both curves flatten as the LR reaches its floor: not overfitting
        )
        if not (rising or stalled):
            # Hysteresis: one good epoch does not end the episode, a lasting recovery does.
            self.quiet += 1
            if self.quiet >= 2 * cfg.patience:
                ctx.close("overfitting")
            return
        self.quiet = 0
        strip = list(self.strip)
        progress = 1000 * (sum(strip) / (len(strip) * min(strip)) - 1) if min(strip) > 0 else math.inf
        pq = gl / progress if progress > 0 else math.inf
        if rising:
            msg = f"val {num(v)} is {gl:.0f}% above its best {num(best)} at epoch {best_epoch}"
        else:
            msg = f"val {num(v)} has not improved on its best {num(best)} (epoch {best_epoch})"
        moved = "fell" if t < train_then else "went"
        msg += (
            f" while train {moved} from {num(train_then)} to {num(t)}; gap {num(v - t)}, "
            f"no val improvement for {plural(e - best_epoch, 'epoch')}"
        )
        critical = gl >= max(cfg.gl_critical, 2 * gl_bar) or (rising and pq > cfg.pq_alpha)
        suggestion, action = ctx.reanneal(cfg.reanneal_epochs)
        suggestion += f" (best val was epoch {best_epoch})"
        ctx.report("overfitting", "overfitting", "critical" if critical else "warning", msg, suggestion, action)
