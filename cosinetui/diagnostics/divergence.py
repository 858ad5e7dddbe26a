"""divergence: the loss rose and stays up, far above its best, back where training started, or
far above where it was before an LR increase once the bump the increase excuses is over."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cosinetui.diagnostics.common import median, num, plural, relative_noise
from cosinetui.diagnostics.context import HALVE_LR
from cosinetui.diagnostics.rule import Rule
from cosinetui.events import EpochEnd

SUGGESTION = "halve the LR (or pause and restore a checkpoint)"


@dataclass(frozen=True)
class DivergenceConfig:
    ratio: float = 2.0  # loss / best smoothed loss
    window: int = 20  # batches
    fraction: float = 0.75  # of the window above the threshold
    epoch_rise: float = 0.15  # epoch train loss above (1 + rise) * its best ...
    noise_k: float = 1.5  # ... or 1.5 * noise_k times the curve's own relative noise ...
    persistence: int = 2  # ... for this many consecutive epochs
    start_margin: float = 0.1  # "no net progress": within 10% of the starting loss
    recovery: int = 3  # grace lengths after an LR increase's own grace to get back under ratio


class DivergenceRule(Rule):
    kind = "divergence"

    def __init__(self, ctx, config: DivergenceConfig) -> None:
        super().__init__(ctx, config)
        self.best: float | None = None  # lowest smoothed batch level (re-baselined after grace)
        self.rebaseline = False
        # (smoothed level before the latest LR increase, step by which it must be back, epoch)
        self.ref: tuple[float, int, int] | None = None
        self.reported_ref: float | None = None  # the reference of an episode opened after one
        self.recent: deque[float] = deque(maxlen=config.window)
        self.flags: deque[bool] = deque(maxlen=config.window)  # x far above the reference
        self.high: deque[bool] = deque(maxlen=config.window)  # x at the starting loss or above
        self._spe_window = (-1, config.window)
        self.batch_open = False
        self.back = 0
        self.clear = 0
        self.peak = (0.0, 0)
        # epoch level
        self.best_train: float | None = None
        self.ref_train: tuple[float, int, int] | None = None
        self.rise_hits = 0
        self.epoch_open = False
        self.train_recent: deque[float] = deque(maxlen=8)

    def on_lr_increase(self, step: int | None, epoch: int) -> None:
        # The bump after an increase is excused for ``recovery`` grace lengths; a loss still
        # ``ratio`` times above its level before the increase after that has diverged.
        ctx, n = self.ctx, 1 + self.config.recovery
        if step is not None:
            self.rebaseline = True
            if self.best is not None:
                self.ref = (self.best, step + n * ctx.grace_length(), epoch)
        if self.best_train is not None:
            self.ref_train = (self.best_train, epoch + n * ctx.config.grace_epochs, epoch)
        self.best_train = None

    # ------------------------------------------------------------------ batches

    def on_batch(self, step: int, x: float, grace: bool) -> None:
        cfg, ctx = self.config, self.ctx
        start = ctx.start
        if start <= 0:
            return  # ratio rules need a positive loss (a log-likelihood can be negative)
        level = ctx.level
        if not grace and ctx.finite_batches * ctx.config.ema_alpha >= 1:
            if self.best is None:
                self.best = level
            elif self.rebaseline:
                self.best, self.rebaseline = level, False  # the post-increase level
            elif level < self.best:
                self.best = level
        if self.ref is not None and step >= self.ref[1]:
            self._after_increase(step, level, start)
        best = self.best if self.best is not None else start
        base = max(best, start) if grace or self.best is None else best
        window = self._window()
        recent, flags, high = self.recent, self.flags, self.high
        recent.append(x)
        flags.append(base > 0 and x >= max(cfg.ratio * base, ctx.config.significance * start))
        # The median of the window is at the start level or above when half its batches are.
        high.append(x >= start * (1 - cfg.start_margin))
        if window >= len(recent):  # the usual case: the whole deque is the window
            n_flags, n_high = sum(flags), sum(high)
        else:
            n_flags, n_high = sum(list(flags)[-window:]), sum(list(high)[-window:])
        stuck = 2 * n_high > min(window, len(recent))
        # After real progress, a loss that climbs back to where it started diverged too,
        # even when that is less than ratio times its best.
        progressed = self.best is not None and self.best <= start * (1 - 3 * cfg.start_margin)
        self.back = self.back + 1 if stuck and progressed and not grace else 0
        if not self.batch_open and n_flags < cfg.fraction * window and self.back < window:
            return  # the common case: nothing to track
        med = median(sorted(list(recent)[-window:]))
        flags = n_flags
        if len(recent) >= window and (flags >= cfg.fraction * window or self.back >= window):
            self.clear = 0
            if not self.batch_open:
                self.batch_open = True
                self.peak = (med, step)
            if med > self.peak[0]:
                self.peak = (med, step)
        elif self.batch_open and flags <= (1 - cfg.fraction) * window and not stuck:
            # Hysteresis: the episode ends after a grace period of recovery, not at one dip.
            self.clear += 1
            if self.clear < max(window, ctx.grace_length()):
                return
            self.batch_open = False
            self.reported_ref = None
            if not self.epoch_open:
                ctx.close("divergence", f"recovered to {num(med)} by step {step}")
            return
        if not self.batch_open:
            return
        peak, at = self.peak
        if self.reported_ref is not None and self.reported_ref < best:
            best = self.reported_ref  # opened after an LR increase: keep its reference
        ratio = f"{num(peak / best)}x" if best > 0 else "far above"
        msg = f"loss rose to {num(peak)} at step {at}, {ratio} its best smoothed {num(best)}"
        if stuck:
            msg += f"; still {num(med)}, not below its starting value {num(start)}"
        else:
            msg += f"; now {num(med)}"
        self._alert(msg, critical=stuck, step=step)

    def _window(self) -> int:
        """Batches in the window: at most half an epoch for very short epochs."""
        spe = self.ctx.steps_per_epoch()
        if spe != self._spe_window[0]:
            window = min(self.config.window, max(4, spe // 2)) if spe else self.config.window
            self._spe_window = (spe, window)
        return self._spe_window[1]

    def _after_increase(self, step: int, level: float, start: float) -> None:
        ref, _, epoch = self.ref  # type: ignore[misc]
        self.ref = None
        cfg = self.config
        if ref > 0 and level >= cfg.ratio * ref and level >= self.ctx.config.significance * start:
            stuck = level >= start * (1 - cfg.start_margin)
            msg = (
                f"smoothed loss {num(level)} at step {step} is still {num(level / ref)}x its level "
                f"{num(ref)} before the LR increase at epoch {epoch}"
            )
            if stuck:
                msg += f", back at its starting value {num(start)}"
            self._alert(msg, critical=stuck, step=step)
            self.batch_open = True  # ends like any batch-level episode, after a recovery
            self.peak = (level, step)
            self.reported_ref = ref

    def _alert(self, msg: str, critical: bool, step: int | None) -> None:
        severity = "critical" if critical else "warning"
        self.ctx.report("divergence", "divergence", severity, msg, SUGGESTION, HALVE_LR, step)

    # ------------------------------------------------------------------ epochs

    def on_epoch(self, record: EpochEnd, grace: bool) -> None:
        cfg, ctx, e, t = self.config, self.ctx, record.epoch, record.train_loss
        if not (t == t) or t in (float("inf"), float("-inf")):
            return
        first = ctx.first_train
        if first is None or (ctx.absurd_first is not None and e == 1):
            return  # an exploded first epoch is no reference (instability reports it)
        rise = max(cfg.epoch_rise, 1.5 * cfg.noise_k * relative_noise(self.train_recent))
        self.train_recent.append(t)
        if grace:
            self.rise_hits = 0
            return
        if self.best_train is None or t < self.best_train:
            self.best_train = t
        if self.ref_train is not None and e >= self.ref_train[1]:
            ref, _, at = self.ref_train
            self.ref_train = None
            # ref > 0: a loss that was exactly 0 before the increase has no ratio to it.
            if ref > 0 and t >= cfg.ratio * ref and t >= ctx.config.significance * first and not self.batch_open:
                stuck = t >= first * (1 - cfg.start_margin)
                msg = f"train loss {num(t)} is still {num(t / ref)}x its best {num(ref)} before the LR increase at epoch {at}"
                if stuck:
                    msg += f", back at its first epoch's {num(first)}"
                self.epoch_open = True
                self.rise_hits = cfg.persistence
                self.best_train = ref  # the rise is measured from before the increase
                self._alert(msg, stuck, None)
                return
        best = self.best_train
        significant = t >= ctx.config.significance * first
        if best > 0 and t >= best * (1 + rise) and significant:
            self.rise_hits += 1
        else:
            self.rise_hits = 0
            if self.epoch_open:
                self.epoch_open = False
                if not self.batch_open:
                    ctx.close("divergence", f"train back to {num(t)} at epoch {e}")
        if self.rise_hits >= cfg.persistence:
            self.epoch_open = True
            if self.batch_open:
                return  # the batch-level evidence is sharper; keep its message
            stuck = t >= first * (1 - cfg.start_margin) and e > 1
            msg = (
                f"train loss {num(t)} is {(num(100 * (t / best - 1)) + '%') if best > 0 else 'far'} above its best {num(best)} "
                f"for {plural(self.rise_hits, 'epoch')}"
            )
            if stuck:
                msg += f", back at its first epoch's {num(first)}"
            self._alert(msg, stuck or t >= cfg.ratio * best, None)
