"""Cosine learning-rate schedules whose future can be changed while training runs.

`AdjustableCosineLR` is a torch `LRScheduler`, a drop-in for `CosineAnnealingLR` (and, with
``restarts=True``, for `CosineAnnealingWarmRestarts`), driven by a `CosineSchedule`
(`cosinetui.cosine`: the pure math, re-exported here). See docs/schedule.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from cosinetui.cosine import OPS, STATE_VERSION, Adjustment, CosineSchedule, Segment  # noqa: F401

__all__ = ["AdjustableCosineLR", "Adjustment", "CosineSchedule", "Segment", "STATE_VERSION"]


# -- the torch scheduler ----------------------------------------------------------------------


class AdjustableCosineLR(LRScheduler):
    """CosineAnnealingLR whose future can be changed while training runs.

    With ``restarts=True`` it follows CosineAnnealingWarmRestarts(T_0=T_max, T_mult, eta_min);
    with ``warmup_steps=W`` the idiom SequentialLR([LinearLR(start_factor=warmup_start_factor,
    total_iters=W), CosineAnnealingLR(T_max - W, eta_min)], milestones=[W]).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_max: int,
        eta_min: float = 0.0,
        *,
        warmup_steps: int = 0,
        warmup_start_factor: float = 1 / 3,
        restarts: bool = False,
        T_mult: int = 1,
        last_epoch: int = -1,
    ) -> None:
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        elif any("initial_lr" not in g for g in optimizer.param_groups):
            raise KeyError("param 'initial_lr' is not specified in param_groups when resuming")
        base = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.schedule = CosineSchedule(
            base,
            T_max,
            eta_min,
            warmup_steps=warmup_steps,
            warmup_start_factor=warmup_start_factor,
            restarts=restarts,
            T_mult=T_mult,
        )
        self._before_first = True
        super().__init__(optimizer, last_epoch)

    # torch's base class reads and writes last_epoch; it is the schedule's step.
    @property  # type: ignore[override]
    def last_epoch(self) -> int:
        return -1 if self._before_first else self.schedule.step

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:
        self._before_first = value < 0
        if value >= 0:
            self.schedule.step = value

    def get_lr(self) -> list[float]:
        return self.schedule.lr_at(self.schedule.step)

    _get_closed_form_lr = get_lr

    def lr_at(self, step: int) -> list[float]:
        return self.schedule.lr_at(step)

    @property
    def segments(self) -> tuple[Segment, ...]:
        return self.schedule.segments

    @property
    def adjustments(self) -> list[Adjustment]:
        return self.schedule.adjustments

    def _sync(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def reanneal(
        self,
        steps: int | None = None,
        *,
        eta_min: Any = None,
        factor: float = 1.0,
        force: bool = False,
    ) -> None:
        args = {"steps": steps, "eta_min": eta_min, "factor": factor}
        self._adjust("reanneal", {**args, "force": force} if force else args)

    def retime(self, T_max: int) -> None:
        self._adjust("retime", {"T_max": T_max})

    def restart(
        self,
        *,
        steps: int | None = None,
        peak_lr: Any = None,
        eta_min: Any = None,
        warmup_steps: int = 0,
        force: bool = False,
    ) -> None:
        args = {"steps": steps, "peak_lr": peak_lr, "eta_min": eta_min, "warmup_steps": warmup_steps}
        self._adjust("restart", {**args, "force": force} if force else args)

    def apply(self, op: str, args: dict[str, Any] | None = None) -> None:
        """Apply an adjustment by name, as the trainer does with commands from the UI."""
        self._adjust(op, args or {})

    def _adjust(self, op: str, args: dict[str, Any]) -> None:
        if self._before_first:
            raise RuntimeError("the scheduler has not been constructed yet")
        self.schedule.apply(op, args)
        self._sync()

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        schedule = CosineSchedule.from_state(state_dict)
        groups = self.optimizer.param_groups
        if schedule.n_groups != len(groups):
            raise ValueError(
                f"state has {schedule.n_groups} param groups, the optimizer has {len(groups)}"
            )
        self.schedule = schedule
        self._before_first = False
        self.base_lrs = list(schedule.base_lrs)
        for group, base in zip(groups, schedule.base_lrs, strict=True):
            group["initial_lr"] = base
        # Recompute rather than trust whatever LR the optimizer holds.
        self._sync()
