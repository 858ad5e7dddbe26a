"""The run machinery a training loop needs, whoever owns the loop: the run directory's metrics
log, one event stream fanned out to every consumer (log, diagnostics, control socket,
headless lines), the command queue that is drained at batch boundaries, and batch losses
gathered into chunks.

Batch losses may be tensors on a GPU: they stay there until a chunk is flushed (about ten
times a second), then cross to the host in one copy. ``track()`` and the integrations build on
this; nothing here knows whose loop it serves.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cosinetui import store
from cosinetui.diagnostics import Monitor
from cosinetui.events import (
    BatchChunk,
    Command,
    EpochEnd,
    Event,
    Failed,
    Finished,
)
from cosinetui.history import History

CHUNK_SECONDS = 0.1  # at most ~10 batch chunks a second
# ... and at most this many batches in one: a loop of microseconds a batch would otherwise
# gather tens of thousands of losses (as Python floats) and write megabyte lines.
CHUNK_MAX = 4096


class BatchBuffer:
    """Batch losses, LRs, sample counts and per-batch scalars waiting to be sent as a chunk.

    A loss or scalar may be a float or a tensor on any device; tensors are detached here and
    read back all together by ``take`` (one host sync per chunk, not one per batch).
    """

    def __init__(self) -> None:
        self.losses: list[Any] = []
        self.lrs: list[float] = []
        self.weights: list[int] = []
        self.scalars: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: Any, lr: float, weight: int, scalars: dict[str, Any] | None = None) -> None:
        index = len(self.losses)
        self.losses.append(loss)
        self.lrs.append(lr)
        self.weights.append(weight)
        if scalars:
            for name, value in scalars.items():
                column = self.scalars.get(name)
                if column is None:
                    column = self.scalars[name] = [math.nan] * index
                column.append(value)
        if self.scalars:
            for column in self.scalars.values():
                if len(column) <= index:
                    column.append(math.nan)

    def take(self) -> tuple[list[float], list[float], list[int], dict[str, list[float]]]:
        """Everything pending, as host floats, and an empty buffer."""
        losses, lrs, weights, scalars = self.losses, self.lrs, self.weights, self.scalars
        self.losses, self.lrs, self.weights, self.scalars = [], [], [], {}
        names = list(scalars)
        columns = [losses, *(scalars[n] for n in names)]
        values = _to_floats(columns)
        return values[0], lrs, weights, dict(zip(names, values[1:], strict=True))


def _to_floats(columns: list[list[Any]]) -> list[list[float]]:
    """Lists of floats and tensors -> lists of floats, with one transfer per device."""
    by_device: dict[torch.device, list[tuple[int, int, torch.Tensor]]] = {}
    out: list[list[float]] = []
    for c, column in enumerate(columns):
        row: list[float] = []
        for i, v in enumerate(column):
            if isinstance(v, torch.Tensor):
                by_device.setdefault(v.device, []).append((c, i, v))
                row.append(math.nan)
            else:
                row.append(float(v))
        out.append(row)
    for items in by_device.values():
        stacked = torch.stack([t.detach().reshape(()).float() for _, _, t in items]).cpu().tolist()
        for (c, i, _), value in zip(items, stacked, strict=True):
            out[c][i] = value
    return out


class Recorder:
    """Events out and commands in for one run in this process.

    ``emit`` writes an event to metrics.jsonl, feeds the history and the diagnostics (whose
    alerts are emitted in turn) and hands it to every listener. ``send`` queues a command from
    any thread; the loop's owner drains them with ``take_commands`` at a batch boundary and
    blocks in ``wait_for_command`` while paused (no busy wait).
    """

    def __init__(self, run_dir: Path, listeners: list[Callable[[Event], None]] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.listeners = list(listeners or [])
        self.history = History()
        self.monitor = Monitor()
        self.log: store.MetricsLog | None = None
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._wake = threading.Event()

    def open(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log = store.MetricsLog(self.run_dir / store.METRICS)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def load_history(self) -> None:
        """Continue from the recorded run: best val, alert episodes and the diagnostics' view."""
        self.history.extend(store.read_log(self.run_dir).events)
        self.monitor.update(self.history)

    # ------------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        if self.log is not None:
            self.log.write(event)
            if isinstance(event, (Finished, Failed)):
                self.log.flush()  # whoever sees the end can read the complete log
        self.history.apply(event)
        for listener in self.listeners:
            listener(event)
        if isinstance(event, (BatchChunk, EpochEnd)):
            for alert in self.monitor.update(self.history):
                self.emit(alert)

    def flush_log(self) -> None:
        if self.log is not None:
            self.log.flush()

    # ------------------------------------------------------------------ commands

    def send(self, command: Command) -> None:
        """Thread-safe: the command is applied at the loop's next batch boundary."""
        self._commands.put(command)
        self._wake.set()

    def has_commands(self) -> bool:
        return not self._commands.empty()

    def take_commands(self) -> list[Command]:
        self._wake.clear()
        out: list[Command] = []
        while True:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                return out

    def wait_for_command(self, timeout: float | None = None) -> bool:
        """Block until a command is queued (or ``timeout`` seconds pass); True if one was."""
        return self._wake.wait(timeout)


def chunk_event(epoch: int, first_step: int, losses: list[float], lrs: list[float],
                batches_in_epoch: int, scalars: dict[str, list[float]]) -> BatchChunk:
    """A BatchChunk, with per-batch scalars when the loop logged any."""
    if scalars:
        return BatchChunk(epoch, first_step, tuple(losses), tuple(lrs), batches_in_epoch,
                          scalars={k: list(v) for k, v in scalars.items()})
    return BatchChunk(epoch, first_step, tuple(losses), tuple(lrs), batches_in_epoch)

