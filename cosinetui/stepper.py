"""One training batch: forward, backward, and (every ``accumulate`` batches) the optimizer step
with optional gradient clipping.

What a ``train_step`` may return is decided here (``split_output``), and so is what happens
when it calls ``backward()`` itself: that is supported (cosinetui then only clips and steps),
except where cosinetui must scale the loss first (``accumulate`` > 1, float16 loss scaling).

Host syncs follow the trainer's rule: on the CPU values are read as floats at once; on CUDA
and MPS the loss, its finiteness and the gradient norm stay on the device (no per-batch sync).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cosinetui.device import drop_grads_unless
from cosinetui.experiment import ExperimentError

Value = torch.Tensor | float  # a float on the CPU, a 0-dim float32 tensor on other devices

RETURNS = (
    "train_step must return the loss tensor, a (loss, outputs) pair, or a dict with a 'loss' key"
)


def _single(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def split_output(out: Any) -> tuple[torch.Tensor | float, dict[str, Any]]:
    """The loss in a train_step's return value, and the other single numbers of a dict return.

    A tuple's loss is its first element when that holds one number, else its last (nanoGPT's
    ``logits, loss = model(x, y)``).
    """
    extra: dict[str, Any] = {}
    if isinstance(out, torch.Tensor) or _single(out):
        loss = out
    elif isinstance(out, Mapping):
        if "loss" not in out:
            raise ExperimentError(f"{RETURNS}; got a dict with keys {sorted(map(str, out))[:8]}")
        loss = out["loss"]
        extra = {str(k): v for k, v in out.items() if k != "loss" and _single(v)}
    elif isinstance(out, (tuple, list)) and out:
        loss = out[0] if _single(out[0]) else out[-1]
    else:
        raise ExperimentError(f"{RETURNS}; got {type(out).__name__}")
    if not _single(loss):
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ExperimentError(f"{RETURNS}, the loss holding one number; got {shape}")
    return loss, extra


class Stepper:
    """Trains one batch at a time for the trainer; ``train`` returns the batch's loss and its
    per-batch scalars (``grad_norm`` at each optimizer step when clipping, and a dict return's
    other numbers)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        forward: Callable[[Any], Any],
        *,
        device: torch.device,
        on_host: bool | None = None,
        amp_dtype: torch.dtype | None = None,
        scaler: Any = None,
        accumulate: int = 1,
        max_grad_norm: float | None = None,
        ranks: Any = None,
    ) -> None:
        self.model, self.optimizer, self.forward = model, optimizer, forward
        # Read values as floats at once (free on the CPU), or keep them on the device.
        self.on_host = device.type == "cpu" if on_host is None else on_host
        self.device_type = device.type
        self.amp_dtype, self.scaler = amp_dtype, scaler
        self.accumulate, self.max_grad_norm = accumulate, max_grad_norm
        # Several ranks (DDP, without float16 loss scaling): a non-finite loss on any rank must
        # make every rank skip the same step (see distributed.Ranks.probe_grad).
        self.ranks = ranks
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.micro = 0  # batches whose gradients wait for the next optimizer step
        # The DistributedDataParallel module with several ranks: the batches of an accumulation
        # window before its last skip DDP's gradient all-reduce (it runs once, with the last
        # batch's backward, on the summed gradients), as torch's no_sync() does.
        self.ddp: Any = None
        self._unsynced = False  # gradients accumulated without their all-reduce
        self.user_backward: bool | None = None  # decided on the first batch
        self._finite: bool | torch.Tensor = True  # every loss of the window was finite
        self._ranks_ok: bool | torch.Tensor = True  # the last step's reduced gradient was finite

    def train(self, batch: Any, step: bool) -> tuple[Value, dict[str, Value]]:
        """Forward and backward one batch; ``step``: then the optimizer step for its window."""
        if self.micro == 0:
            self.optimizer.zero_grad(set_to_none=True)
        if self.ddp is not None and self.accumulate > 1:
            self.ddp.require_backward_grad_sync = step  # what no_sync() sets, read by forward
            self._unsynced = not step
        if self.amp_dtype is None:
            # Even a disabled autocast context costs a few microseconds a batch (~2.5% of a
            # 0.5 ms batch): enter it only when mixed precision is on.
            out = self.forward(batch)
        else:
            with torch.autocast(self.device_type, dtype=self.amp_dtype):
                out = self.forward(batch)
        loss, extra = split_output(out)
        if self.user_backward is None:
            self.user_backward = self._called_backward(loss)
        if not self.user_backward:
            if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
                raise ExperimentError(_no_grad_message(loss))
            scaled = loss / self.accumulate if self.accumulate > 1 else loss
            if self.ranks is not None:
                scaled = self._poison(scaled, loss)
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        self.micro += 1
        value = self._value(loss)
        self._note_finite(value)
        scalars = {name: self._value(v) for name, v in extra.items()}
        if step:
            norm = self.step()
            if norm is not None:
                scalars["grad_norm"] = norm
            if self.ranks is not None:
                # A step skipped because another rank's loss was non-finite: rank 0 records NaN,
                # so the NaN policy applies on every rank at the same step.
                ok = self._ranks_ok
                value = (value if ok else math.nan) if isinstance(ok, bool) else torch.where(ok, value, math.nan)
        return value, scalars

    def _poison(self, scaled: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        if self.on_host:
            return scaled if math.isfinite(loss.item()) else scaled * math.nan
        return scaled * torch.where(torch.isfinite(loss.detach()), 1.0, math.nan)

    def step(self) -> Value | None:
        """The optimizer step for the batches accumulated since the last one (none: no-op).

        The gradient stepped on is the mean over those batches: k of them, or fewer at the end
        of an epoch or right after a resume from a checkpoint taken inside a window. Returns
        the gradients' total norm before clipping when ``max_grad_norm`` is set.
        """
        r, self.micro = self.micro, 0
        if r == 0:
            return None
        finite, self._finite = self._finite, True
        if self._unsynced:
            # A window cut short (a pass without len() ended inside it): reduce by hand what
            # the skipped all-reduce would have.
            self._unsynced = False
            self.ddp.require_backward_grad_sync = True
            average_grads(self.params)
        if self.ranks is not None:
            # Gradients are all-reduced: one element tells whether any rank's loss was bad.
            probe = self.ranks.probe_grad(self.model)
            finite = math.isfinite(probe.item()) if self.on_host else torch.isfinite(probe)
            self._ranks_ok = finite
        if r < self.accumulate:
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(self.accumulate / r)
        norm = None
        if self.max_grad_norm is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips non-finite steps itself
            self.scaler.update()
        elif self.on_host:
            norm_value = None if norm is None else norm.item()
            # A non-finite norm would write NaN into every weight through the clip: skip the
            # step, as for a non-finite loss.
            if finite and (norm_value is None or math.isfinite(norm_value)):
                self.optimizer.step()
            return norm_value
        elif finite is not False:
            if norm is not None:
                finite = torch.isfinite(norm) & finite
            if isinstance(finite, torch.Tensor):
                # CUDA and MPS run asynchronously: branching on the loss would sync the host
                # every batch. A non-finite window contributes no gradient, decided on the device.
                drop_grads_unless(finite, self.params)
            self.optimizer.step()
        return None if norm is None else norm.detach().float()

    def _note_finite(self, loss: Value) -> None:
        finite = math.isfinite(loss) if isinstance(loss, float) else torch.isfinite(loss)
        if self._finite is True:
            self._finite = finite
        elif self._finite is not False:
            self._finite = self._finite & finite

    def _value(self, value: Any) -> Value:
        """A loss or scalar as the trainer records it."""
        if not isinstance(value, torch.Tensor):
            return float(value)
        if self.on_host:
            # Reported as float32, as the device path reports it (a float64 loss is rounded).
            return value.item() if value.dtype == torch.float32 else value.detach().float().item()
        value = value.detach()
        return (value.reshape(()) if value.dim() else value).float()

    def _called_backward(self, loss: Any) -> bool:
        """Whether the first batch's train_step called backward() itself (gradients exist)."""
        if not any(p.grad is not None for p in self.params):
            return False
        if self.accumulate > 1:
            raise ExperimentError(
                "train_step calls backward() itself; with accumulate > 1 return the loss instead "
                "(cosinetui divides it by accumulate and calls backward())"
            )
        if self.scaler is not None:
            raise ExperimentError(
                "train_step calls backward() itself; with --amp float16 loss scaling return the "
                "loss instead (cosinetui scales it and calls backward())"
            )
        return True


def _no_grad_message(loss: Any) -> str:
    got = "a number" if not isinstance(loss, torch.Tensor) else "a tensor that does not require grad"
    return (
        f"train_step returned {got} and no gradients were computed: {RETURNS}, the loss as "
        "computed from the model's output (not loss.item() or loss.detach(), nor under "
        "torch.no_grad()); cosinetui calls backward() on it. A train_step that calls "
        "backward() itself is also accepted."
    )


def average_grads(params: list[torch.Tensor]) -> None:
    """Each gradient averaged over the ranks, as DDP's all-reduce leaves it."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)
