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
    optimizer_steps: int = 0,
    epoch_scalars: dict[str, list[float]] | None = None,
    world_size: int = 1,
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
        "optimizer_steps": optimizer_steps,
        "epoch_scalars": {str(k): [float(v[0]), float(v[1])] for k, v in (epoch_scalars or {}).items()},
        "world_size": world_size,  # ranks that trained it; the model is the unwrapped one
    }
    atomic_write(Path(path), lambda fh: torch.save(payload, fh), what="checkpoint")


def save_weights(path: Path, model: torch.nn.Module, *, epoch: int, step: int, val_loss: float | None) -> None:
    """best.pt: a model's weights and the epoch they are from, saved atomically.

    ``torch.load(path, weights_only=True)["model"]`` is a state dict for ``load_state_dict``.
    """
    payload = {"format": FORMAT_VERSION, "model": model.state_dict(), "epoch": epoch, "step": step,
               "val_loss": val_loss}
    atomic_write(Path(path), lambda fh: torch.save(payload, fh))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # unpickling refusals, truncation, wrong file type
        first = (str(exc).strip().splitlines() or [""])[0][:200]  # torch's run to many lines
        raise RunDirError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT_VERSION:
        raise RunDirError(f"{path}: unknown checkpoint format {ck.get('format') if isinstance(ck, dict) else '?'}")
    why = _check(ck)
    if why:
        raise RunDirError(f"{path}: not a usable checkpoint: {why}")
    return ck


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# What each entry must be; checked before anything is applied, so that a damaged or foreign
# checkpoint is one clear line, not a traceback from deep inside the resume.
_ENTRIES: dict[str, tuple[Any, str]] = {
    "model": (lambda v: isinstance(v, dict), "a state dict"),
    "optimizer": (lambda v: isinstance(v, dict) and isinstance(v.get("param_groups"), list), "an optimizer state dict"),
    "scheduler": (lambda v: isinstance(v, str), "the schedule's JSON state"),
    "scaler": (lambda v: v is None or isinstance(v, dict), "a GradScaler state or None"),
    "epoch": (_is_int, "an integer >= 0"),
    "step": (_is_int, "an integer >= 0"),
    "batch_in_epoch": (_is_int, "an integer >= 0"),
    "epoch_loss": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], float) and _is_int(v[1]),
        "[loss sum, samples]",
    ),
    "rng": (lambda v: _rng_ok(v), "RNG states"),
    "epoch_rng": (lambda v: v is None or _rng_ok(v), "RNG states or None"),
}


def _rng_ok(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("torch"), torch.Tensor)
        and isinstance(v.get("python"), (list, tuple))
        and len(v["python"]) == 3
    )


def _check(ck: dict[str, Any]) -> str:
    """"" for a checkpoint this version can resume from (normalising it), else what is wrong."""
    for name, (ok, expected) in _ENTRIES.items():
        if name not in ck:
            return f"no {name!r} entry"
        if not ok(ck[name]):
            return f"{name} must be {expected}, got {type(ck[name]).__name__}"
    from cosinetui.cosine import CosineSchedule

    try:
        state = json.loads(ck["scheduler"])
        CosineSchedule.from_state(state)  # bounded and valid, or refused here
    except (ValueError, TypeError, RecursionError) as exc:
        return f"scheduler: {str(exc)[:200]}"
    ck["scheduler"] = state
    ck["epoch_loss"] = tuple(ck["epoch_loss"])
    return ""
