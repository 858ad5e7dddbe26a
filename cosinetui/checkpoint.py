"""Checkpoints: everything needed to continue a run exactly, saved atomically.

Loaded with ``torch.load(weights_only=True)``: a checkpoint holds only tensors and plain
data, so opening someone else's run directory cannot execute code. The scheduler's state
travels as a JSON string and is recomputed from, not trusted as, stored floats.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from cosinetui.store import RunDirError, atomic_write

FORMAT_VERSION = 1


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _py_state_to_list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_py_state_from_list(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _py_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    epoch: int,
    step: int,
    batch_in_epoch: int,
    epoch_loss: tuple[float, int],
    epoch_rng: dict[str, Any] | None,
) -> None:
    """``epoch`` counts completed epochs; ``batch_in_epoch`` > 0 marks a mid-epoch checkpoint."""
    payload = {
        "format": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": json.dumps(scheduler.state_dict()),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "step": step,
        "batch_in_epoch": batch_in_epoch,
        "epoch_loss": [float(epoch_loss[0]), int(epoch_loss[1])],
        "rng": capture_rng(),
        "epoch_rng": epoch_rng,
    }
    atomic_write(Path(path), lambda fh: torch.save(payload, fh), what="checkpoint")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # unpickling refusals, truncation, wrong file type
        raise RunDirError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT_VERSION:
        raise RunDirError(f"{path}: unknown checkpoint format {ck.get('format') if isinstance(ck, dict) else '?'}")
    ck["scheduler"] = json.loads(ck["scheduler"])
    ck["epoch_loss"] = tuple(ck["epoch_loss"])
    return ck
