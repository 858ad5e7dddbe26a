"""The interface every rule implements; the Monitor calls only what a rule overrides."""

from __future__ import annotations

from typing import Any

from cosinetui.diagnostics.context import RunContext
from cosinetui.events import EpochEnd


class Rule:
    """One alert kind. ``on_batch`` sees each finite batch loss in order (only rules that
    override it are called per batch), ``on_bad_batch`` each non-finite one, ``on_epoch`` each
    epoch record, ``on_lr_increase`` the start of each LR increase that grants a grace window."""

    kind = ""

    def __init__(self, ctx: RunContext, config: Any) -> None:
        self.ctx, self.config = ctx, config

    def on_batch(self, step: int, x: float, grace: bool) -> None:  # pragma: no cover - interface
        pass

    def on_bad_batch(self, step: int, x: float) -> None:
        pass

    def on_epoch(self, record: EpochEnd, grace: bool) -> None:
        pass

    def on_lr_increase(self, step: int | None, epoch: int) -> None:
        pass

    def overrides(self, name: str) -> bool:
        return getattr(type(self), name) is not getattr(Rule, name)
