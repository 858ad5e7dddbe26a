"""plateau: neither smoothed loss improves (beyond its own noise) while the LR is still high;
or, after a few epochs, the train loss is still no lower than where the run started (a model
that learns nothing: an LR so high that the first steps broke it, or one too low to move)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cosinetui.diagnostics.common import Best, falling, finite, median, num, plural
from cosinetui.diagnostics.context import HALVE_LR
from cosinetui.diagnostics.rule import Rule
from cosinetui.events import EpochEnd
from cosinetui.history import Ema


@dataclass(frozen=True)
class PlateauConfig:
    patience: int = 5
    min_delta: float = 0.01
    noise_k: float = 1.5
    lr_fraction: float = 0.25  # below this fraction of the peak LR, flat is expected
    # After this many epochs (counted from the last LR increase, so a warmup is not judged)
    # a run whose best epoch train loss is not at least `no_progress` below its starting
    # loss (the median of its first five batch losses: robust to small batches' noise; runs
    # logged without batches have no starting loss and are not judged) has learned nothing.
    no_progress_epochs: int = 4
    no_progress: float = 0.05
    # An epoch train loss this many times the starting loss before that: the LR broke it.
    no_progress_rose: float = 1.25


class PlateauRule(Rule):
    kind = "plateau"

    def __init__(self, ctx, config: PlateauConfig) -> None:
        super().__init__(ctx, config)
        self.train = Best(config.min_delta, config.noise_k)
        self.val = Best(config.min_delta, config.noise_k)
        self.train_ema = Ema(ctx.config.epoch_ema_alpha)
        self.val_ema = Ema(ctx.config.epoch_ema_alpha)
        self.rebaseline = False
        self.recent = {"train": deque(maxlen=config.patience + 2), "val": deque(maxlen=config.patience + 2)}
        self.progressed = False  # the train loss has been clearly below the starting loss
        self.highest = 0.0  # the highest epoch train loss so far

    def on_lr_increase(self, step: int | None, epoch: int) -> None:
        self.rebaseline = True

    def on_epoch(self, record: EpochEnd, grace: bool) -> None:
        cfg, ctx, e = self.config, self.ctx, record.epoch
        if ctx.absurd_first is not None and e == 1:
            return
        self._progress(record)
        t = self.train_ema.add(record.train_loss) if finite(record.train_loss) else float("nan")
        v = self.val_ema.add(record.val_loss) if finite(record.val_loss) else float("nan")  # type: ignore[arg-type]
        if grace or self.rebaseline:
            if grace:
                return
            self.train.reset()
            self.val.reset()
            self.rebaseline = False
        improved = False
        if finite(t):
            improved |= self.train.update(t, e, record.train_loss)
        if finite(v):
            improved |= self.val.update(v, e, record.val_loss)  # type: ignore[arg-type]
        for name, x in (("train", record.train_loss), ("val", record.val_loss)):
            if finite(x):
                self.recent[name].append(x)  # type: ignore[arg-type]
        # A steady fall smaller than the noise of each step is progress too.
        improved |= falling(self.recent["train"]) or falling(self.recent["val"])
        if improved:
            ctx.close("plateau")
            return
        bad = self.train.bad
        if ctx.seen_val:
            bad = min(bad, self.val.bad)
        lr = record.lr
        annealed = finite(lr) and ctx.peak_lr > 0 and lr < cfg.lr_fraction * ctx.peak_lr
        if bad < cfg.patience or annealed or ctx.is_open("divergence"):
            return  # rising is not a plateau
        msg = f"train {num(t)}" + (f" and val {num(v)}" if finite(v) else "")
        thr = max(self.train.threshold(), self.val.threshold())
        msg += f" (smoothed) have not improved by {100 * thr:.0f}% for {plural(bad, 'epoch')}"
        if finite(lr) and ctx.peak_lr > 0:
            msg += f" while the LR is still {lr:.3g} ({100 * lr / ctx.peak_lr:.0f}% of its peak)"
        severity = "warning" if bad >= 2 * cfg.patience else "info"
        ctx.report("plateau", "plateau", severity, msg, "halve the LR", HALVE_LR)

    def _progress(self, record: EpochEnd) -> None:
        cfg, ctx, e, x = self.config, self.ctx, record.epoch, record.train_loss
        if self.progressed or len(ctx.first) < 5 or not finite(x):
            return
        start = median(sorted(ctx.first))
        self.highest = max(self.highest, x)
        if x < (1 - cfg.no_progress) * start:
            self.progressed = True
            ctx.close("no-progress", f"the train loss fell below it at epoch {e}")
            return
        since = e - max(ctx.increase_epochs, default=0)
        if since < cfg.no_progress_epochs or ctx.is_open("no-progress"):
            return
        msg = (
            f"after {plural(e, 'epoch')} the train loss {num(x)} is no lower than where the run "
            f"started ({num(start)}, its first batches): the model is not learning"
        )
        if self.highest >= cfg.no_progress_rose * start:
            msg += f"; it rose to {num(self.highest)} first, the mark of an LR too high"
            ctx.report("no-progress", "plateau", "warning", msg, "halve the LR", HALVE_LR)
        else:
            msg += "; check the LR (too low?), the loss and the data"
            ctx.report("no-progress", "plateau", "warning", msg, "check the LR, loss and data")
