"""nan: a non-finite batch or epoch loss (critical at once: one NaN is already a problem)."""

from __future__ import annotations

from dataclasses import dataclass

from cosinetui.diagnostics.common import finite
from cosinetui.diagnostics.context import HALVE_LR
from cosinetui.diagnostics.rule import Rule
from cosinetui.events import EpochEnd

SUGGESTION = "halve the LR before resuming"


@dataclass(frozen=True)
class NanConfig:
    """No thresholds; the section exists so every rule is configured the same way."""


class NanRule(Rule):
    kind = "nan"

    def __init__(self, ctx, config: NanConfig) -> None:
        super().__init__(ctx, config)
        self.batches = 0
        self.first = ""
        self.in_epoch = False

    def on_bad_batch(self, step: int, x: float) -> None:
        ctx = self.ctx
        self.batches += 1
        self.in_epoch = True
        if not ctx.is_open("nan"):
            what = "not a number" if x != x else "infinite"
            self.first = f"train loss is {what} at step {step} (epoch {ctx.epoch})"
        n = self.batches
        msg = f"{self.first}; {n} non-finite batch loss{'es' if n > 1 else ''} so far"
        ctx.report("nan", "nan", "critical", msg, SUGGESTION, HALVE_LR, step)

    def on_epoch(self, record: EpochEnd, grace: bool) -> None:
        ctx, e = self.ctx, record.epoch
        t, v = record.train_loss, record.val_loss
        if v is not None and not finite(v) and not ctx.seen_val:
            v = None  # a run that never had a val loss
        bad_t, bad_v = not finite(t), v is not None and not finite(v)
        if bad_t or bad_v:
            what = "train and val losses are" if bad_t and bad_v else ("train loss is" if bad_t else "val loss is")
            if not ctx.is_open("nan"):
                ctx.report("nan", "nan", "critical", f"{what} not a number at epoch {e}", SUGGESTION, HALVE_LR)
        elif not self.in_epoch:
            ctx.close("nan")
            self.batches = 0
        self.in_epoch = False
