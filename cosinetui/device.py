"""Where training runs, and moving batches there: device choice, transfers, batch sizes, and
the sync-free guard against non-finite gradients."""

from __future__ import annotations

from typing import Any

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def drop_grads_unless(finite: torch.Tensor, params: Any) -> None:
    """Zero every gradient when the 0-dim bool tensor ``finite`` is False, without a host sync."""
    for p in params:
        if p.grad is not None:
            p.grad.masked_fill_(~finite, 0.0)


def batch_size(batch: Any) -> int:
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    if isinstance(batch, dict) and batch:
        batch = next(iter(batch.values()))
    if isinstance(batch, torch.Tensor) and batch.dim() > 0:
        return int(batch.shape[0])
    return 1
