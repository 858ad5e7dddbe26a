"""Pure detectors over a run's history -> alerts (docs/diagnostics.md states every rule).

A ``Monitor`` keeps incremental state: each ``update(history)`` looks only at the batches and
epochs that are new since the previous call (plus bounded windows), so a live run can call it
after every batch chunk. ``diagnose(history)`` feeds a fresh Monitor once and returns every
alert episode in its final state; batches and epochs are always processed in the order they
happened, so the live and the offline verdicts agree.

An *episode* is one lasting condition. It is raised once, then updated (new evidence) or
escalated (higher severity) under the same ``key``, and closed when the condition clears.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from cosinetui.events import Alert, EpochEnd
from cosinetui.history import Ema

SEVERITIES = ("info", "warning", "critical")
HALVE_LR: dict[str, Any] = {"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Thresholds of every rule; the defaults and their reasons are in docs/diagnostics.md."""

    # Schedule awareness: after an LR increase (warm restart, warmup, user change) a bump is
    # expected for this long; epochs are converted to batches with the run's epoch length.
    grace_epochs: int = 1
    grace_batches: int = 100  # when the epoch length is unknown
    ema_alpha: float = 0.05  # debiased EMA of batch losses (TensorBoard-style smoothing)
    epoch_ema_alpha: float = 0.5  # the same over epoch losses, for the patience rules
    # instability: batch spikes (median/MAD over a trailing window, with persistence)
    spike_window: int = 200
    spike_min_history: int = 50
    spike_mad: float = 6.0  # robust z-score: (x - median) / (1.4826 * MAD)
    spike_ratio: float = 2.0  # and x >= ratio * median
    spike_count: int = 5  # spikes within spike_window batches that make an episode
    spike_merge: int = 5  # a spike within this many batches of the previous one is the same
    # instability: epoch-to-epoch jumps of the train or val loss
    jump_rel: float = 0.25
    jump_count: int = 2
    jump_window: int = 6
    # A train loss below this fraction of the run's starting loss is never a spike, a jump or
    # a divergence: once a loss nears zero, tiny absolute changes make huge ratios.
    significance: float = 0.1
    # divergence
    divergence_ratio: float = 2.0  # loss / best smoothed loss
    divergence_window: int = 20  # batches
    divergence_fraction: float = 0.75  # of the window above the threshold
    epoch_rise: float = 0.15  # epoch train loss above (1 + rise) * its best ...
    persistence: int = 2  # ... for this many consecutive epochs (also for GL)
    start_margin: float = 0.1  # "no net progress": within 10% of the starting loss
    # overfitting (Prechelt 1998 GL and PQ; patience/min_delta as in ReduceLROnPlateau)
    gl_warning: float = 5.0  # generalization loss, percent above the best val loss
    gl_critical: float = 20.0
    pq_alpha: float = 3.0  # GL / P_k above this is critical (training no longer pays)
    strip: int = 5  # Prechelt's k, epochs in a training strip
    patience: int = 4
    min_delta: float = 0.01  # relative improvement that counts ...
    noise_k: float = 1.5  # ... and at least this many times the curve's own relative noise
    train_drop: float = 0.1  # train fell by this fraction since val's best ...
    gap_min: float = 0.25  # ... and val is this fraction above train (both overfitting rules)
    reanneal_epochs: int = 3
    # plateau
    plateau_patience: int = 5
    plateau_lr_fraction: float = 0.25  # below this fraction of the peak LR, flat is expected
    # schedule
    lr_flat_epochs: int = 5
    lr_flat_fraction: float = 0.5
    lr_jump_fraction: float = 0.5  # one-step LR change, as a fraction of the peak LR


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x) and not math.isinf(x)


def _num(x: float) -> str:
    a = abs(x)
    if not math.isfinite(x):
        return str(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.1:
        return f"{x:.2f}"
    return f"{x:.2g}"


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _relative_noise(values: deque[float]) -> float:
    """Noise of a short series relative to its level, from second differences (which
    cancel a linear trend): a robust sigma of x[i] - 2x[i-1] + x[i-2] is sqrt(6) sigma."""
    if len(values) < 5:
        return 0.0
    v = list(values)
    d2 = sorted(abs(v[i] - 2 * v[i - 1] + v[i - 2]) for i in range(2, len(v)))
    level = _median(sorted(v))
    return 1.4826 * _median(d2) / math.sqrt(6) / level if level > 0 else 0.0


class _Best:
    """Best value with patience, as ReduceLROnPlateau (mode=min, threshold_mode=rel), except
    that an improvement must also beat ``noise_k`` times the raw curve's own relative noise
    (the tracked value itself is usually the smoothed curve)."""

    def __init__(self, min_delta: float, noise_k: float, window: int = 8) -> None:
        self.min_delta, self.noise_k = min_delta, noise_k
        self.recent: deque[float] = deque(maxlen=window)
        self.value: float | None = None
        self.epoch = 0
        self.bad = 0

    def threshold(self) -> float:
        return max(self.min_delta, self.noise_k * _relative_noise(self.recent))

    def update(self, value: float, epoch: int, raw: float) -> bool:
        self.recent.append(raw)
        if self.value is None or value < self.value * (1 - self.threshold()):
            self.value, self.epoch, self.bad = value, epoch, 0
            return True
        self.bad += 1
        return False

    def reset(self) -> None:
        self.value, self.bad = None, 0


class Monitor:
    """Incremental detectors; ``update`` returns alerts that are new or changed since last call."""

    def __init__(self, config: DiagnosticsConfig | None = None) -> None:
        self.config = cfg = config or DiagnosticsConfig()
        self._alerts: dict[str, Alert] = {}  # every episode, in the order raised
        self._emitted: dict[str, Alert] = {}
        self._open: dict[str, str] = {}  # slot -> key of its open episode
        self._history: Any = None
        self._run: Any = None
        self._batch_pos = 0
        self._epoch_pos = 0
        self._change_pos = 0
        self._epoch = 1  # epoch the next batch belongs to
        # LR tracking
        self._peak_lr = 0.0
        self._last_lr: float | None = None
        self._grace_until = -1  # first batch step after the current grace period
        self._rebaseline = False
        self._increase_epochs: set[int] = set()
        self._explained_epochs: set[int] = set()
        # batch level
        self._ema = 0.0
        self._ema_weight = 0.0
        self._finite_batches = 0
        self._first: list[float] = []
        self._best_ema: float | None = None
        self._window: deque[float] = deque(maxlen=cfg.spike_window)
        self._stats: tuple[float, float] | None = None
        self._spikes: deque[tuple[int, float]] = deque()
        self._last_spike = -(10**9)
        self._recent: deque[float] = deque(maxlen=cfg.divergence_window)
        self._flags: deque[bool] = deque(maxlen=cfg.divergence_window)
        self._div_batch = False
        self._back = 0
        self._div_clear = 0
        self._div_peak = (0.0, 0)
        self._nan_batches = 0
        self._nan_first = ""
        self._nan_in_epoch = False
        # epoch level
        self._prev: EpochEnd | None = None
        self._first_train: float | None = None
        self._best_train: float | None = None
        self._rise_hits = 0
        self._div_epoch = False
        self._train_recent: deque[float] = deque(maxlen=8)
        self._jumps: deque[tuple[int, str, float, float]] = deque()
        self._seen_val = False
        self._val_min: tuple[float, int, float] | None = None  # (val, epoch, train then)
        self._val_best = _Best(cfg.min_delta, cfg.noise_k)
        self._train_at_val_best = math.nan
        self._gl_hits = 0
        self._overfit_quiet = 0
        self._strip: deque[float] = deque(maxlen=cfg.strip)
        self._plateau_train = _Best(cfg.min_delta, cfg.noise_k)
        self._plateau_val = _Best(cfg.min_delta, cfg.noise_k)
        self._plateau_rebaseline = False
        self._train_ema = Ema(cfg.epoch_ema_alpha)
        self._val_ema = Ema(cfg.epoch_ema_alpha)
        self._done = 0  # epochs processed
        self._flat_epochs = 0
        self._jump_count = 0
        self._lr_decreased = False

    # ------------------------------------------------------------------ public

    def update(self, history: Any) -> list[Alert]:
        """Process what is new in ``history``; return alerts raised, escalated or updated.

        Raised and escalated alerts come back on the call that finds them; other updates
        (fresher numbers) at most once per epoch end, so a live UI is not flooded.
        """
        self._history = history
        if history.run is not None and history.run is not self._run:
            self._run = history.run
            # A resume truncates the history back to its checkpoint; continue from there.
            self._batch_pos = min(self._batch_pos, history.run.global_step)
            self._epoch_pos = min(self._epoch_pos, history.run.start_epoch)
        self._batch_pos = min(self._batch_pos, len(history.losses))
        self._epoch_pos = min(self._epoch_pos, len(history.epochs))
        for change in history.schedule_changes[self._change_pos :]:
            self._schedule_change(change)
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
        for key, alert in self._alerts.items():
            before = self._emitted.get(key)
            if before is None or before.severity != alert.severity or (ended and before != alert):
                self._emitted[key] = alert
                out.append(alert)
        return out

    def alerts(self) -> list[Alert]:
        """Every episode so far, in its latest state, in the order raised."""
        return list(self._alerts.values())

    # ------------------------------------------------------------------ episodes

    def _report(
        self,
        slot: str,
        kind: str,
        severity: str,
        message: str,
        suggestion: str = "",
        action: dict[str, Any] | None = None,
        step: int | None = None,
        epoch: int | None = None,
    ) -> None:
        key = self._open.get(slot)
        if key is None:
            epoch = epoch if epoch is not None else self._epoch
            key = f"{kind}:{epoch}"
            n = 2
            while key in self._alerts:
                key, n = f"{kind}:{epoch}.{n}", n + 1
            self._open[slot] = key
        else:
            old = self._alerts[key]
            epoch, step = old.epoch, old.step
            if SEVERITIES.index(old.severity) > SEVERITIES.index(severity):
                severity = old.severity
        self._alerts[key] = Alert(kind, severity, epoch, message, suggestion, step, action, key)

    def _close(self, slot: str) -> None:
        self._open.pop(slot, None)

    # ------------------------------------------------------------------ run facts

    def _steps_per_epoch(self) -> int:
        run = self._run
        if run is not None and run.steps_per_epoch:
            return run.steps_per_epoch
        epochs = self._history.epochs if self._history is not None else ()
        if epochs and epochs[0].step > 0:
            return epochs[0].step
        return 0

    def _grace_length(self) -> int:
        spe = self._steps_per_epoch()
        return spe * self.config.grace_epochs if spe else self.config.grace_batches

    def _reanneal(self, epochs: int) -> tuple[str, dict[str, Any] | None]:
        run = self._run
        if run is not None and run.epochs:
            left = run.epochs - self._done
            if left > 0:
                epochs = min(epochs, left)
        steps = epochs
        if run is not None and run.interval == "batch":
            spe = self._steps_per_epoch()
            if not spe:
                return "", None
            steps = epochs * spe
        action = {"type": "adjust", "op": "reanneal", "args": {"steps": steps}}
        return f"r: reanneal to the floor over {_plural(epochs, 'epoch')}", action

    def _lr_increase(self, step: int | None, epoch: int) -> None:
        self._increase_epochs.add(epoch)
        if step is not None:
            self._grace_until = max(self._grace_until, step + self._grace_length())
        self._rebaseline = True
        self._plateau_rebaseline = True

    def _planned_restarts(self) -> bool:
        """Whether the scheduler's JSON state says it restarts by itself (SGDR cycles)."""
        for state in (self._run.schedule if self._run else None, self._history.schedule):
            if not isinstance(state, dict):
                continue
            if (state.get("config") or {}).get("restarts"):
                return True
            segments = state.get("segments") or ()
            if any(isinstance(seg, dict) and seg.get("after") == "restart" for seg in segments):
                return True
        return False

    def _in_grace(self, epoch: int) -> bool:
        return any(
            e in self._increase_epochs for e in range(epoch - self.config.grace_epochs, epoch + 1)
        )

    def _schedule_change(self, change: Any) -> None:
        run, spe = self._run, self._steps_per_epoch()
        if run is not None and run.interval == "batch":
            step: int | None = change.step
            epoch = change.step // spe + 1 if spe else self._epoch
        else:
            epoch = change.step + 1
            step = change.step * spe if spe else None
        self._explained_epochs.update((epoch, epoch + 1))
        raised = change.lrs and self._last_lr is not None and change.lrs[0] > self._last_lr
        if change.op == "restart" or raised:
            self._lr_increase(step, epoch)

    # ------------------------------------------------------------------ batches

    def _batches(self, history: Any, end: int) -> None:
        cfg = self.config
        losses, lrs = history.losses, history.lrs
        n_lrs = len(lrs)
        alpha = cfg.ema_alpha
        for i in range(self._batch_pos, end):
            lr = lrs[i] if i < n_lrs else math.nan
            if lr == lr and not math.isinf(lr):
                if self._last_lr is not None and lr > self._last_lr * (1 + 1e-9):
                    self._lr_increase(i, self._epoch)
                self._last_lr = lr
                if lr > self._peak_lr:
                    self._peak_lr = lr
            x = losses[i]
            if x != x or math.isinf(x):
                self._nan_batch(i, x)
                continue
            self._finite_batches += 1
            self._ema = (1 - alpha) * self._ema + alpha * x
            self._ema_weight = (1 - alpha) * self._ema_weight + alpha
            level = self._ema / self._ema_weight
            if len(self._first) < 5:
                self._first.append(x)
            grace = i < self._grace_until
            if not grace and self._finite_batches * alpha >= 1:
                if self._rebaseline or self._best_ema is None:
                    self._best_ema, self._rebaseline = level, False
                elif level < self._best_ema:
                    self._best_ema = level
            self._spike(i, x, grace)
            self._diverge(i, x, grace)
            self._window.append(x)
            if i % 16 == 0 or self._stats is None:
                self._stats = None
        self._batch_pos = max(self._batch_pos, end)

    def _nan_batch(self, step: int, x: float) -> None:
        self._nan_batches += 1
        self._nan_in_epoch = True
        key = self._open.get("nan")
        if key is None:
            what = "not a number" if x != x else "infinite"
            self._nan_first = f"train loss is {what} at step {step} (epoch {self._epoch})"
        n = self._nan_batches
        msg = f"{self._nan_first}; {n} non-finite batch loss{'es' if n > 1 else ''} so far"
        self._report(
            "nan", "nan", "critical", msg, "h: halve the LR before resuming", HALVE_LR, step
        )

    def _spike(self, step: int, x: float, grace: bool) -> None:
        cfg = self.config
        if len(self._window) < cfg.spike_min_history:
            return
        if self._stats is None:
            ordered = sorted(self._window)
            med = _median(ordered)
            mad = _median(sorted([abs(v - med) for v in ordered]))
            self._stats = (med, 1.4826 * mad)
        med, scale = self._stats
        while self._spikes and self._spikes[0][0] <= step - cfg.spike_window:
            self._spikes.popleft()
        if grace or x < med * cfg.spike_ratio or x < med + cfg.spike_mad * scale:
            return
        if self._first and x < cfg.significance * min(self._first):
            return  # near zero loss, large ratios of tiny numbers are not instability
        ratio = x / med if med > 0 else math.inf
        if self._last_spike >= step - cfg.spike_merge:
            # Consecutive spikes are one event: a sustained rise is divergence, not noise.
            self._last_spike = step
            return
        self._last_spike = step
        self._spikes.append((step, ratio))
        if len(self._spikes) >= cfg.spike_count:
            worst = max(r for _, r in self._spikes)
            msg = (
                f"{_plural(len(self._spikes), 'loss spike')} in the last {cfg.spike_window} "
                f"batches, up to {_num(worst)}x the running median {_num(med)} (step {step})"
            )
            self._report(
                "instability", "instability", "warning", msg, "h: halve the LR", HALVE_LR, step
            )

    def _diverge(self, step: int, x: float, grace: bool) -> None:
        cfg = self.config
        if not self._first:
            return
        start = min(self._first)
        if start <= 0:
            return  # ratio rules need a positive loss (a log-likelihood can be negative)
        best = self._best_ema if self._best_ema is not None else start
        base = max(best, start) if grace or self._best_ema is None else best
        spe = self._steps_per_epoch()
        window = min(cfg.divergence_window, max(4, spe // 2)) if spe else cfg.divergence_window
        self._recent.append(x)
        self._flags.append(base > 0 and x >= max(cfg.divergence_ratio * base, cfg.significance * start))
        if window >= len(self._recent):  # the usual case: the whole deque is the window
            recent, flags = sorted(self._recent), sum(self._flags)
        else:
            recent, flags = sorted(list(self._recent)[-window:]), sum(list(self._flags)[-window:])
        median = _median(recent)
        stuck = median >= start * (1 - cfg.start_margin)
        # After real progress, a loss that climbs back to where it started diverged too,
        # even when that is less than divergence_ratio times its best.
        progressed = self._best_ema is not None and self._best_ema <= start * (
            1 - 3 * cfg.start_margin
        )
        self._back = self._back + 1 if stuck and progressed and not grace else 0
        if len(recent) == window and (
            flags >= cfg.divergence_fraction * window or self._back >= window
        ):
            self._div_clear = 0
            if not self._div_batch:
                self._div_batch = True
                self._div_peak = (median, step)
            if median > self._div_peak[0]:
                self._div_peak = (median, step)
        elif self._div_batch and flags <= (1 - cfg.divergence_fraction) * window and not stuck:
            # Hysteresis: the episode ends after a grace period of recovery, not at one dip.
            self._div_clear += 1
            if self._div_clear < max(window, self._grace_length()):
                return
            self._div_batch = False
            if not self._div_epoch:
                self._close("divergence")
            return
        if not self._div_batch:
            return
        peak, at = self._div_peak
        ratio = f"{_num(peak / best)}x" if best > 0 else "far above"
        msg = f"loss rose to {_num(peak)} at step {at}, {ratio} its best smoothed {_num(best)}"
        if stuck:
            msg += f"; still {_num(median)}, not below its starting value {_num(start)}"
        else:
            msg += f"; now {_num(median)}"
        self._divergence_alert(msg, critical=stuck, step=step)

    def _divergence_alert(self, msg: str, critical: bool, step: int | None) -> None:
        severity = "critical" if critical else "warning"
        suggestion = "h: halve the LR (or pause and restore a checkpoint)"
        self._report("divergence", "divergence", severity, msg, suggestion, HALVE_LR, step)

    # ------------------------------------------------------------------ epochs

    def _end_epoch(self, record: EpochEnd) -> None:
        e = record.epoch
        self._epoch = e
        self._epoch_lr(record)
        t, v = record.train_loss, record.val_loss
        if v is not None:
            if _finite(v):
                self._seen_val = True
            elif not self._seen_val:
                v = None
        bad_t, bad_v = not _finite(t), v is not None and not _finite(v)
        if bad_t or bad_v:
            what = (
                "train and val losses are"
                if bad_t and bad_v
                else ("train loss is" if bad_t else "val loss is")
            )
            if self._open.get("nan") is None:
                self._report(
                    "nan",
                    "nan",
                    "critical",
                    f"{what} not a number at epoch {e}",
                    "h: halve the LR before resuming",
                    HALVE_LR,
                )
        elif not self._nan_in_epoch:
            self._close("nan")
            self._nan_batches = 0
        self._nan_in_epoch = False
        grace = self._in_grace(e)
        self._done = e
        ts = self._train_ema.add(t) if _finite(t) else math.nan
        vs = self._val_ema.add(v) if v is not None and _finite(v) else math.nan
        if _finite(t):
            self._epoch_divergence(e, t, grace)
        self._epoch_jumps(record, grace)
        if _finite(vs) and _finite(t):
            self._overfitting(e, t, v, vs, grace)  # type: ignore[arg-type]
        self._plateau(e, record, ts, vs, grace)
        self._prev = record
        self._epoch = e + 1

    def _epoch_lr(self, record: EpochEnd) -> None:
        cfg, lr, e = self.config, record.lr, record.epoch
        prev = self._prev.lr if self._prev is not None and self._prev.epoch == e - 1 else None
        if not _finite(lr):
            return
        self._peak_lr = max(self._peak_lr, lr)
        if prev is None or not _finite(prev):
            return
        if lr > prev * (1 + 1e-9):
            self._lr_increase(None, e)
        elif lr < prev * (1 - 1e-9):
            self._lr_decreased = True
        if abs(lr - prev) <= 1e-12 + 1e-9 * abs(lr):
            self._flat_epochs += 1
        else:
            self._flat_epochs = 0
            self._close("schedule-flat")
        if (
            self._flat_epochs + 1 >= cfg.lr_flat_epochs
            and lr >= cfg.lr_flat_fraction * self._peak_lr
        ):
            left = self._run.epochs - e if self._run is not None else 0
            suggestion, action = self._reanneal(left if left > 0 else cfg.reanneal_epochs)
            msg = f"LR has stayed at {lr:.3g} for {self._flat_epochs + 1} epochs: the schedule is not moving"
            self._report("schedule-flat", "schedule", "warning", msg, suggestion, action)
        # A cosine over E epochs itself moves by up to about pi / (2E) of its peak an epoch;
        # twice that is the least a change must be to count as abrupt on a short run.
        planned = self._run.epochs if self._run is not None and self._run.interval == "epoch" else 0
        jump = max(cfg.lr_jump_fraction, math.pi / planned if planned else 0.0)
        if (
            abs(lr - prev) >= jump * self._peak_lr
            and e not in self._explained_epochs
            and (lr < prev or self._lr_decreased)  # a warmup ramp is not a jump
            and not (lr > prev and self._planned_restarts())
        ):
            self._jump_count += 1
            up = lr > prev
            msg = f"LR {'jumped' if up else 'dropped'} from {prev:.3g} to {lr:.3g} at epoch {e} with no recorded schedule change"
            if self._jump_count > 1:
                msg += f" ({self._jump_count} such changes)"
            if up:
                msg += "; a warm restart? the loss bump after it is treated as expected"
            self._report(
                "schedule-jump",
                "schedule",
                "info" if up else "warning",
                msg,
                "check the scheduler's configuration",
            )

    def _epoch_divergence(self, e: int, t: float, grace: bool) -> None:
        cfg = self.config
        if self._first_train is None:
            self._first_train = t
        rise = max(cfg.epoch_rise, 1.5 * cfg.noise_k * _relative_noise(self._train_recent))
        self._train_recent.append(t)
        if grace:
            self._rise_hits = 0
            self._best_train = None  # re-baselined after the expected bump
            return
        if self._best_train is None or t < self._best_train:
            self._best_train = t
        best = self._best_train
        significant = self._first_train is None or t >= cfg.significance * self._first_train
        if best > 0 and t >= best * (1 + rise) and significant:
            self._rise_hits += 1
        else:
            self._rise_hits = 0
            if self._div_epoch:
                self._div_epoch = False
                if not self._div_batch:
                    self._close("divergence")
        if self._rise_hits >= cfg.persistence:
            self._div_epoch = True
            if self._div_batch:
                return  # the batch-level evidence is sharper; keep its message
            stuck = t >= self._first_train * (1 - cfg.start_margin) and e > 1
            msg = (
                f"train loss {_num(t)} is {_num(100 * (t / best - 1))}% above its best {_num(best)} "
                f"for {_plural(self._rise_hits, 'epoch')}"
            )
            if stuck:
                msg += f", back at its first epoch's {_num(self._first_train)}"
            self._divergence_alert(msg, stuck or t >= cfg.divergence_ratio * best, None)

    def _epoch_jumps(self, record: EpochEnd, grace: bool) -> None:
        cfg, prev, e = self.config, self._prev, record.epoch
        while self._jumps and self._jumps[0][0] <= e - cfg.jump_window:
            self._jumps.popleft()
        if prev is not None and not grace and "divergence" not in self._open:
            for name, a, b in (
                ("train", prev.train_loss, record.train_loss),
                ("val", prev.val_loss, record.val_loss),
            ):
                floor = cfg.significance * (self._first_train or 0.0) if name == "train" else 0.0
                if _finite(a) and _finite(b) and b > a * (1 + cfg.jump_rel) and b >= floor:
                    self._jumps.append((e, name, a, b))  # type: ignore[arg-type]
                    break  # both curves jumping in one epoch is one jump
        if len(self._jumps) >= cfg.jump_count:
            ep, name, a, b = self._jumps[-1]
            msg = (
                f"losses jumped up by more than {_num(100 * cfg.jump_rel)}% "
                f"{_plural(len(self._jumps), 'time')} in the last {cfg.jump_window} epochs "
                f"(latest: {name} {_num(a)} -> {_num(b)} at epoch {ep})"
            )
            self._report("instability", "instability", "warning", msg, "h: halve the LR", HALVE_LR)
        elif not self._jumps and not self._spikes:
            self._close("instability")

    def _overfitting(self, e: int, t: float, v: float, smooth_v: float, grace: bool) -> None:
        cfg = self.config
        self._strip.append(t)
        if self._val_min is None or v < self._val_min[0]:
            self._val_min = (v, e, t)
        if grace:
            self._gl_hits = 0
            return
        if self._val_best.update(smooth_v, e, v):
            self._train_at_val_best = t
        best, best_epoch, train_then = self._val_min
        gl = 100 * (v / best - 1) if best > 0 else 0.0
        # Val above its best while train still falls is only overfitting once a real gap has
        # opened: with val within gap_min of train, a noisy val at a high LR looks the same.
        gap_open = v >= t * (1 + cfg.gap_min)
        self._gl_hits = self._gl_hits + 1 if gl >= cfg.gl_warning and t < train_then and gap_open else 0
        rising = self._gl_hits >= cfg.persistence
        stalled = (
            self._val_best.bad >= cfg.patience
            and t <= self._train_at_val_best * (1 - cfg.train_drop)
            and v >= t * (1 + cfg.gap_min)
        )
        if not (rising or stalled):
            # Hysteresis: one good epoch does not end the episode, a lasting recovery does.
            self._overfit_quiet += 1
            if self._overfit_quiet >= 2 * cfg.patience:
                self._close("overfitting")
            return
        self._overfit_quiet = 0
        strip = list(self._strip)
        progress = (
            1000 * (sum(strip) / (len(strip) * min(strip)) - 1) if min(strip) > 0 else math.inf
        )
        pq = gl / progress if progress > 0 else math.inf
        if rising:
            msg = f"val {_num(v)} is {gl:.0f}% above its best {_num(best)} at epoch {best_epoch}"
            since = e - best_epoch
        else:
            msg = f"val {_num(v)} has not improved on its best {_num(best)} (epoch {best_epoch})"
            since = self._val_best.bad
        msg += (
            f" while train fell from {_num(train_then)} to {_num(t)}; gap {_num(v - t)}, "
            f"no val improvement for {_plural(since, 'epoch')}"
        )
        critical = gl >= cfg.gl_critical or (rising and pq > cfg.pq_alpha)
        suggestion, action = self._reanneal(cfg.reanneal_epochs)
        suggestion += f" (best val was epoch {best_epoch})"
        severity = "critical" if critical else "warning"
        self._report("overfitting", "overfitting", severity, msg, suggestion, action)

    def _plateau(self, e: int, record: EpochEnd, t: float, v: float, grace: bool) -> None:
        cfg = self.config
        if grace or self._plateau_rebaseline:
            if grace:
                return
            self._plateau_train.reset()
            self._plateau_val.reset()
            self._plateau_rebaseline = False
        improved = False
        if _finite(t):
            improved |= self._plateau_train.update(t, e, record.train_loss)
        if _finite(v):
            improved |= self._plateau_val.update(v, e, record.val_loss)  # type: ignore[arg-type]
        if improved:
            self._close("plateau")
            return
        bad = self._plateau_train.bad
        if self._seen_val:
            bad = min(bad, self._plateau_val.bad)
        lr = record.lr
        annealed = (
            _finite(lr) and self._peak_lr > 0 and lr < cfg.plateau_lr_fraction * self._peak_lr
        )
        if bad < cfg.plateau_patience or annealed or "divergence" in self._open:
            return  # rising is not a plateau
        msg = f"train {_num(t)}" + (f" and val {_num(v)}" if v is not None and _finite(v) else "")
        thr = max(self._plateau_train.threshold(), self._plateau_val.threshold())
        msg += f" (smoothed) have not improved by {100 * thr:.0f}% for {_plural(bad, 'epoch')}"
        if _finite(lr) and self._peak_lr > 0:
            msg += f" while the LR is still {lr:.3g} ({100 * lr / self._peak_lr:.0f}% of its peak)"
        severity = "warning" if bad >= 2 * cfg.plateau_patience else "info"
        self._report("plateau", "plateau", severity, msg, "h: halve the LR", HALVE_LR)


def diagnose(history: Any, config: DiagnosticsConfig | None = None) -> list[Alert]:
    """Every alert episode of a whole run, each in its final state, in the order raised."""
    monitor = Monitor(config)
    monitor.update(history)
    return monitor.alerts()


def format_alerts(alerts: list[Alert]) -> str:
    """Readable text for a terminal: one alert per line, its suggestion indented below."""
    if not alerts:
        return "no warnings: nothing unusual found"
    lines = []
    for a in alerts:
        where = f"epoch {a.epoch}" + (f", step {a.step}" if a.step is not None else "")
        lines.append(f"{a.severity.upper():<8} {a.kind:<11} {where}: {a.message}")
        if a.suggestion:
            lines.append(f"{'':<21}-> {a.suggestion}")
    return "\n".join(lines)
