"""instability: the loss jumps up and down (repeated batch spikes or epoch jumps), explodes at
once (a batch, or the whole first epoch, absurdly far above the run's starting loss), or the
gradient norm explodes (runs with ``max_grad_norm`` record it before clipping: clipping can
keep the loss calm while the gradients are not)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from cosinetui.diagnostics.common import finite, median, num, plural, relative_noise
from cosinetui.diagnostics.context import HALVE_LR
from cosinetui.diagnostics.rule import Rule
from cosinetui.events import EpochEnd

SUGGESTION = "halve the LR"


@dataclass(frozen=True)
class InstabilityConfig:
    spike_window: int = 200  # batches: the median/MAD reference and the counting window
    spike_min_history: int = 50
    spike_mad: float = 6.0  # robust z-score: (x - median) / (1.4826 * MAD)
    spike_ratio: float = 2.0  # and x >= ratio * median
    spike_count: int = 5  # spikes within spike_window batches that make an episode
    spike_merge: int = 5  # a spike within this many batches of the previous one is the same
    # A spike must reach this fraction of the run's starting loss: near zero, one hard sample
    # in a small batch makes a huge ratio that means nothing.
    spike_floor: float = 1.0
    jump_rel: float = 0.25  # an epoch loss above (1 + jump_rel) times the previous epoch's ...
    jump_noise_k: float = 3.0  # ... and this many times the curve's own relative noise ...
    jump_max: float = 0.5  # ... capped here: the noise of an unstable curve is its instability
    # ... and by at least this fraction of the first epoch's train loss: near zero, a 25% rise
    # of a tiny loss is no instability.
    jump_min_rise: float = 0.05
    jump_count: int = 2  # jumps within jump_window epochs that make an episode
    jump_window: int = 6
    # A gradient norm (before clipping, where a run records it) this many times the run's
    # starting norm (the median of its first grad_start norms) is an explosion. Not spikes
    # against a running median: on healthy small-batch runs that fit their data, the norms
    # are heavy-tailed (a hard batch among easy ones: 20 to 150x the running median, up to
    # 13x the starting norm on the runs in docs/diagnostics.md).
    grad_absurd: float = 100.0
    grad_start: int = 20


class InstabilityRule(Rule):
    kind = "instability"

    def __init__(self, ctx, config: InstabilityConfig) -> None:
        super().__init__(ctx, config)
        self.window: deque[float] = deque(maxlen=config.spike_window)
        self.stats: tuple[float, float] | None = None  # median and robust sigma of the window
        self.stats_step = 0
        self.spikes: deque[tuple[int, float]] = deque()
        self.last_spike = -(10**9)
        self.first_norms: list[float] = []
        self.start_norm = 0.0
        self.exploded = False
        self.jumps: deque[tuple[int, str, float, float]] = deque()
        self.recent = {"train": deque(maxlen=8), "val": deque(maxlen=8)}

    # ------------------------------------------------------------------ batches

    def on_batch(self, step: int, x: float, grace: bool) -> None:
        # The common case costs one comparison: a batch below the spike floor is no spike.
        start = self.ctx.start
        if x >= self.config.spike_floor * start and start > 0:
            self._high(step, x, grace)
        self.window.append(x)

    def _high(self, step: int, x: float, grace: bool) -> None:
        cfg, ctx = self.config, self.ctx
        if not self.exploded and x >= ctx.config.absurd_batch * ctx.start:
            # Far beyond anything a bump after an LR increase explains: grace or not.
            self.exploded = True
            msg = (
                f"the loss exploded to {num(x)} at step {step}, "
                f"{num(x / ctx.start)}x the run's starting loss {num(ctx.start)}"
            )
            ctx.report("instability", "instability", "warning", msg, SUGGESTION, HALVE_LR, step)
        window = self.window
        if len(window) < cfg.spike_min_history:
            return
        if self.stats is None or step - self.stats_step >= 16:
            ordered = sorted(window)
            med = median(ordered)
            mad = median(sorted([abs(v - med) for v in ordered]))
            self.stats, self.stats_step = (med, 1.4826 * mad), step
        self._spike(step, x, grace)

    def _spike(self, step: int, x: float, grace: bool) -> None:
        cfg, ctx = self.config, self.ctx
        med, scale = self.stats  # type: ignore[misc]
        spikes = self.spikes
        while spikes and spikes[0][0] <= step - cfg.spike_window:
            spikes.popleft()
        if grace or x < med * cfg.spike_ratio or x < med + cfg.spike_mad * scale:
            return
        ratio = x / med if med > 0 else math.inf
        if self.last_spike >= step - cfg.spike_merge:
            # Consecutive spikes are one event: a sustained rise is divergence, not noise.
            self.last_spike = step
            return
        self.last_spike = step
        spikes.append((step, ratio))
        if len(spikes) >= cfg.spike_count:
            worst = max(r for _, r in spikes)
            msg = (
                f"{plural(len(spikes), 'loss spike')} in the last {cfg.spike_window} "
                f"batches, up to {num(worst)}x the running median {num(med)} (step {step})"
            )
            ctx.report("instability", "instability", "warning", msg, SUGGESTION, HALVE_LR, step)

    def on_grad_norm(self, step: int, g: float, grace: bool) -> None:
        cfg = self.config
        start = self.start_norm
        if start <= 0:
            first = self.first_norms
            first.append(g)
            if len(first) == cfg.grad_start:  # then never again: the list stays this short
                self.start_norm = median(sorted(first)) or math.inf  # all zero: nothing to compare
            return
        if g >= cfg.grad_absurd * start and not self.exploded:
            # Far beyond an LR increase's bump, as for the loss: grace or not.
            self.exploded = True
            msg = (
                f"the gradient norm exploded to {num(g)} at step {step}, {num(g / start)}x the "
                f"run's starting norm {num(start)} (the norm before clipping)"
            )
            self.ctx.report("instability", "instability", "warning", msg, SUGGESTION, HALVE_LR, step)

    # ------------------------------------------------------------------ epochs

    def on_epoch(self, record: EpochEnd, grace: bool) -> None:
        cfg, ctx, e = self.config, self.ctx, record.epoch
        prev = ctx.prev
        if e == 2 and prev is not None and ctx.absurd_first is not None:
            first = ctx.absurd_first
            msg = (
                f"the first epoch's train loss {num(first)} is "
                f"{num(first / record.train_loss)}x the second's {num(record.train_loss)}: "
                "the loss exploded at the start"
            )
            if not ctx.is_open("instability"):
                ctx.report("instability", "instability", "warning", msg, SUGGESTION, HALVE_LR, epoch=1)
        while self.jumps and self.jumps[0][0] <= e - cfg.jump_window:
            self.jumps.popleft()
        while self.spikes and self.spikes[0][0] <= record.step - cfg.spike_window:
            self.spikes.popleft()
        if prev is not None and not grace:
            for name, a, b in (("train", prev.train_loss, record.train_loss), ("val", prev.val_loss, record.val_loss)):
                if not (finite(a) and finite(b)):
                    continue
                first = ctx.first_train or 0.0
                floor = ctx.config.significance * first if name == "train" else 0.0
                rel = max(cfg.jump_rel, min(cfg.jump_max, cfg.jump_noise_k * relative_noise(self.recent[name])))
                if b > a * (1 + rel) and b >= floor and b - a >= cfg.jump_min_rise * first:
                    self.jumps.append((e, name, a, b))  # type: ignore[arg-type]
                    break  # both curves jumping in one epoch is one jump
        for name, x in (("train", record.train_loss), ("val", record.val_loss)):
            if finite(x):
                self.recent[name].append(x)  # type: ignore[arg-type]
        if len(self.jumps) >= cfg.jump_count:
            ep, name, a, b = self.jumps[-1]
            msg = (
                f"losses jumped up by more than {num(100 * cfg.jump_rel)}% "
                f"{plural(len(self.jumps), 'time')} in the last {cfg.jump_window} epochs "
                f"(latest: {name} {num(a)} -> {num(b)} at epoch {ep})"
            )
            ctx.report("instability", "instability", "warning", msg, SUGGESTION, HALVE_LR)
        elif not self.jumps and not self.spikes and not (e <= 2 and ctx.absurd_first is not None):
            ctx.close("instability")
            self.exploded = False
