"""What ``track()`` keeps of a loop it does not own: its checkpoints (the same file and keys as
the trainer's), its run directory and config, and the signals that stop it.

A checkpoint holds the model, the optimizer and the scheduler the loop gave ``track()``: an
``AdjustableCosineLR`` as its JSON state (recomputed on load, as the trainer's), any other
torch scheduler as its plain ``state_dict()`` (loadable with ``weights_only``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cosinetui import store
from cosinetui.checkpoint import FORMAT_VERSION, capture_rng, load_checkpoint
from cosinetui.schedule import AdjustableCosineLR

# Set by `cosinetui run script.py` for the script it runs; read (and cleared) by track().
ENV_RUN_DIR = "COSINETUI_RUN_DIR"
ENV_RESUME = "COSINETUI_RESUME"  # "1": continue the run in ENV_RUN_DIR from its checkpoint
ENV_ON_NAN = "COSINETUI_ON_NAN"
ENV_CHECKPOINT_EVERY = "COSINETUI_CHECKPOINT_EVERY"
ENV_NAME = "COSINETUI_NAME"
ENV_VARS = (ENV_RUN_DIR, ENV_RESUME, ENV_ON_NAN, ENV_CHECKPOINT_EVERY, ENV_NAME)


def take_environment() -> dict[str, Any]:
    """The run directory and options `cosinetui run script.py` set, removed from the
    environment: the first track() of the process is the run; a second one is the script's own."""
    env = {k: os.environ.pop(k) for k in ENV_VARS if k in os.environ}
    out: dict[str, Any] = {}
    if env.get(ENV_RUN_DIR):
        out["run_dir"] = env[ENV_RUN_DIR]
        out["resume"] = env.get(ENV_RESUME) == "1"
    if env.get(ENV_ON_NAN) in ("pause", "stop", "continue"):
        out["on_nan"] = env[ENV_ON_NAN]
    if env.get(ENV_CHECKPOINT_EVERY, "").isdigit():
        out["checkpoint_every"] = int(env[ENV_CHECKPOINT_EVERY])
    if env.get(ENV_NAME):
        out["name"] = env[ENV_NAME]
    return out


def save(path: Path, *, model: Any, optimizer: Any, scheduler: Any, counters: dict[str, Any]) -> None:
    """Write checkpoint.pt atomically. ``counters``: epoch, step, batch_in_epoch, epoch_loss,
    epoch_scalars, epoch_rng (the loop's position and its unfinished epoch's sums)."""
    adjustable = isinstance(scheduler, AdjustableCosineLR)
    payload = {
        "format": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": json.dumps(scheduler.state_dict() if adjustable else None),
        "scheduler_state": scheduler.state_dict() if scheduler is not None and not adjustable else None,
        "scaler": None,
        "rng": capture_rng(),
        **counters,
    }
    store.atomic_write(path, lambda fh: torch.save(payload, fh))


def load(path: Path, *, model: Any, optimizer: Any, scheduler: Any, device: torch.device) -> dict[str, Any]:
    """Restore model, optimizer and scheduler from checkpoint.pt; return the checkpoint."""
    ck = _read(path, device)
    model.load_state_dict(ck["model"])
    if optimizer is not None and ck.get("optimizer") is not None:
        optimizer.load_state_dict(ck["optimizer"])
    if isinstance(scheduler, AdjustableCosineLR) and ck["scheduler"]:
        scheduler.load_state_dict(ck["scheduler"])
    elif scheduler is not None and ck.get("scheduler_state") is not None:
        scheduler.load_state_dict(ck["scheduler_state"])
    ck["epoch_scalars"] = {str(k): [float(a), float(b)] for k, (a, b) in (ck.get("epoch_scalars") or {}).items()}
    return ck


def _read(path: Path, device: torch.device) -> dict[str, Any]:
    """The trainer's reader checks an AdjustableCosineLR state; a loop's checkpoint may hold
    another scheduler's (``scheduler`` is then the JSON null), so it is read here the same way."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise store.RunDirError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # unpickling refusals, truncation, wrong file type
        raise store.RunDirError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT_VERSION:
        raise store.RunDirError(f"{path}: not a cosinetui checkpoint")
    if ck.get("scheduler") not in (None, "null"):
        return load_checkpoint(path, device)  # an AdjustableCosineLR: the full checks
    ck["scheduler"] = None
    ck["epoch_loss"] = tuple(ck["epoch_loss"])
    return ck


def check_resume_dir(resume: Any, needs_checkpoint: bool) -> Path:
    """The run directory to resume, refused (ValueError) unless it holds a run and, when the
    loop has a model, a checkpoint; and unless it and the checkpoint are the user's own
    (no symlink planted by another user is followed)."""
    path = Path(resume)
    if not (path / store.METRICS).is_file():
        raise ValueError(f"{path}: no run to resume (no {store.METRICS})")
    if needs_checkpoint and not (path / store.CHECKPOINT).is_file():
        raise ValueError(f"{path}: no {store.CHECKPOINT} to resume from")
    try:
        store.check_run_dir(path)
        if needs_checkpoint:
            store.check_own_file(path / store.CHECKPOINT)
    except store.RunDirError as exc:
        raise ValueError(str(exc)) from None
    return path


def prepare_dir(*, run_dir: Any, resume: Any, name: str, needs_checkpoint: bool,
                config: dict[str, Any] | None) -> Path:
    """The run directory: the one to resume, the one given (fresh), or runs/<name>-<time>.
    ``config``: written to config.json for a new run (None: the caller wrote it)."""
    if resume is not None:
        return check_resume_dir(resume, needs_checkpoint)
    if run_dir is not None:
        path = Path(run_dir)
        if (path / store.METRICS).exists():
            raise ValueError(f"{path} already holds a run; continue it with track(resume={str(path)!r})")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        path = store.new_run_dir("runs", name, time.strftime("%Y%m%d-%H%M%S"))
    if config is not None:
        store.write_config(path, config)
    return path


def script_config(name: str, on_nan: str, checkpoint_every: int) -> dict[str, Any]:
    """config.json for a script run started with ``python train.py``: what `cosinetui
    resume` needs to run it again."""
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0].endswith(".py") else None
    return {
        "target": script, "mode": "script", "script_args": sys.argv[1:], "entry": "experiment",
        "overrides": {"name": name}, "device": None, "amp": False,
        "on_nan": on_nan, "checkpoint_every": checkpoint_every,
    }


class SignalStop:
    """Ctrl+C, SIGTERM and SIGHUP call ``stop(signum)`` once (the loop stops after its batch
    with a checkpoint, as in `cosinetui run`); a second one exits at once (the last
    checkpoint stays valid: it is replaced atomically). Only in the main thread, where Python
    delivers signals."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, stop: Callable[[int], None]) -> None:
        self._stop = stop
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            print(f"{name} again: exiting without waiting", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received = signum
        print(f"{name}: stopping after the current batch and writing a checkpoint...", file=sys.stderr, flush=True)
        self._stop(signum)
