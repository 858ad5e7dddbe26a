"""What every rule reads about the run so far, kept in one place: the run's facts (epoch length,
planned epochs, peak LR, LR increases and their grace windows), the smoothed batch level, and
the alert episodes (raised, updated, closed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cosinetui.diagnostics.common import plural
from cosinetui.events import Alert, EpochEnd

SEVERITIES = ("info", "warning", "critical")
# The fixes are commands the trainer understands (docs/run-format.md); the dashboard, not the
# rule, decides which key applies one.
HALVE_LR: dict[str, Any] = {"type": "adjust", "op": "reanneal", "args": {"factor": 0.5}}


@dataclass(frozen=True)
class ContextConfig:
    # After an LR increase (warm restart, warmup, user change) a bump is expected for this
    # long; epochs are converted to batches with the run's epoch length.
    grace_epochs: int = 1
    grace_batches: int = 100  # when the epoch length is unknown
    ema_alpha: float = 0.05  # debiased EMA of batch losses (TensorBoard-style smoothing)
    epoch_ema_alpha: float = 0.5  # the same over epoch losses, for the patience rules
    # A train loss below this fraction of the run's starting loss is never a spike, a jump or
    # a divergence: once a loss nears zero, tiny absolute changes make huge ratios.
    significance: float = 0.1
    # An epoch-1 train loss this many times above the next epochs' is an explosion, not the
    # run's starting level (LR far too high at the start).
    absurd_start: float = 50.0
    # A single batch loss this many times the starting loss is an explosion (the lognormal
    # spread of small batches stays within a few times its level).
    absurd_batch: float = 200.0


class RunContext:
    """Shared facts and the episode book; rules read it and report through it."""

    def __init__(self, config: ContextConfig) -> None:
        self.config = config
        self.alerts: dict[str, Alert] = {}  # every episode, in the order raised
        self.open: dict[str, str] = {}  # slot -> key of its open episode
        self.history: Any = None
        self.run: Any = None
        self.epoch = 1  # epoch the next batch belongs to
        self.done = 0  # epochs processed
        self.prev: EpochEnd | None = None  # the previous epoch record
        # LR facts
        self.peak_lr = 0.0
        self.last_lr: float | None = None
        self.grace_until = -1  # first batch step after the current grace period
        self.increase_epochs: set[int] = set()
        self.explained_epochs: set[int] = set()  # epochs a recorded schedule change explains
        self.increases: list[tuple[int, float | None]] = []  # (epoch, loss level before it)
        # batch level
        self.ema = 0.0
        self.ema_weight = 0.0
        self.level = 0.0  # debiased EMA of the finite batch losses
        self.finite_batches = 0
        self.first: list[float] = []  # the first five finite batch losses
        self.start = 0.0  # the lowest of them: the run's starting loss
        # epoch level
        self.first_train: float | None = None  # the first sane epoch train loss
        self.absurd_first: float | None = None  # epoch 1's train loss when it was an explosion
        self.train_levels: list[float] = []  # epoch train losses, for "level before" look-ups
        self.seen_val = False

    # ------------------------------------------------------------------ episodes

    def report(
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
        key = self.open.get(slot)
        if key is None:
            epoch = epoch if epoch is not None else self.epoch
            key = f"{kind}:{epoch}"
            n = 2
            while key in self.alerts:
                key, n = f"{kind}:{epoch}.{n}", n + 1
            self.open[slot] = key
        else:
            old = self.alerts[key]
            epoch, step = old.epoch, old.step
            if SEVERITIES.index(old.severity) > SEVERITIES.index(severity):
                severity = old.severity
        self.alerts[key] = Alert(kind, severity, epoch, message, suggestion, step, action, key)

    def close(self, slot: str, note: str = "") -> None:
        """End ``slot``'s open episode; ``note`` is appended to its message (why it ended)."""
        key = self.open.pop(slot, None)
        if key is not None and note:
            a = self.alerts[key]
            self.alerts[key] = Alert(
                a.kind, a.severity, a.epoch, f"{a.message}; {note}", a.suggestion, a.step, a.action, key
            )

    def is_open(self, slot: str) -> bool:
        return slot in self.open

    # ------------------------------------------------------------------ run facts

    def steps_per_epoch(self) -> int:
        run = self.run
        if run is not None and run.steps_per_epoch:
            return run.steps_per_epoch
        epochs = self.history.epochs if self.history is not None else ()
        if epochs and epochs[0].step > 0:
            return epochs[0].step
        return 0

    def grace_length(self) -> int:
        spe = self.steps_per_epoch()
        return spe * self.config.grace_epochs if spe else self.config.grace_batches

    def in_grace(self, epoch: int) -> bool:
        return any(e in self.increase_epochs for e in range(epoch - self.config.grace_epochs, epoch + 1))

    def reanneal(self, epochs: int) -> tuple[str, dict[str, Any] | None]:
        """Suggestion and action: anneal to the floor over ``epochs`` (capped at those left)."""
        run = self.run
        if run is not None and run.epochs:
            left = run.epochs - self.done
            if left > 0:
                epochs = min(epochs, left)
        steps = epochs
        if run is not None and run.interval == "batch":
            spe = self.steps_per_epoch()
            if not spe:
                return "", None
            steps = epochs * spe
        action = {"type": "adjust", "op": "reanneal", "args": {"steps": steps}}
        return f"reanneal to the floor over {plural(epochs, 'epoch')}", action

    def planned_restarts(self) -> bool:
        """Whether the scheduler's JSON state says it restarts by itself (SGDR cycles)."""
        for state in (self.run.schedule if self.run else None, self.history.schedule):
            if not isinstance(state, dict):
                continue
            if (state.get("config") or {}).get("restarts"):
                return True
            segments = state.get("segments") or ()
            if any(isinstance(seg, dict) and seg.get("after") == "restart" for seg in segments):
                return True
        return False

    def level_before_increase(self) -> float | None:
        """The loss level just before the latest LR increase (None if none or unknown)."""
        return self.increases[-1][1] if self.increases else None
