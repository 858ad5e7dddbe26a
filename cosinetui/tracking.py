"""Bring your own training loop: ``cosinetui.track()``.

::

    with cosinetui.track(model=model, optimizer=opt, scheduler=sched, epochs=E,
                         steps_per_epoch=len(loader), name="gpt") as run:
        for epoch in run.epochs():          # continues after a resume
            for x, y in loader:
                loss = step(x, y)           # the user's forward/backward/step
                sched.step()
                run.log_batch(loss)         # a tensor or a float; no host sync on CUDA
            run.log_epoch(val_loss=evaluate(), metrics={"acc": acc})

The run writes the same run directory, metrics log and control socket as ``cosinetui run``.
Commands are applied inside ``log_batch``: a pause blocks there, a stop raises ``RunStopped``,
which the ``with`` block swallows after a checkpoint. Under ``cosinetui run script.py`` the run
directory and options come from the environment (``loopstate.ENV_*``).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cosinetui import loopstate, store
from cosinetui.checkpoint import capture_rng, restore_rng
from cosinetui.events import (
    AdjustSchedule,
    CheckpointWritten,
    Command,
    CommandRefused,
    EpochEnd,
    Failed,
    Finished,
    Pause,
    Paused,
    Resume,
    Resumed,
    RunStarted,
    SaveCheckpoint,
    ScheduleChanged,
    Stop,
    to_json,
)
from cosinetui.headless import Printer
from cosinetui.recorder import CHUNK_MAX, CHUNK_SECONDS, BatchBuffer, Recorder, chunk_event
from cosinetui.schedule import AdjustableCosineLR

runs_started = 0  # runs this process began; `cosinetui run script.py` reports a script with none


class RunStopped(BaseException):  # noqa: N818 - a control-flow signal, like KeyboardInterrupt
    """Raised by ``log_batch``/``log_epoch`` when the run is told to stop.

    A BaseException so that a loop's ``except Exception`` does not swallow it; the ``with``
    block does, after the checkpoint and the ``finished`` record.
    """


class TrackError(Exception):
    """A track() call that cannot work as given; the message says why."""


def track(
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epochs: int,
    steps_per_epoch: int = 0,
    name: str | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    interval: str = "batch",
    on_nan: str = "stop",
    checkpoint_every: int = 1,
    lines: bool = True,
    config: dict[str, Any] | None = None,
) -> Run:
    """A run for a training loop you write; use it as a context manager.

    ``model``/``optimizer``/``scheduler`` are what checkpoints hold and resume restores (all
    optional; without a model there are no checkpoints). ``interval`` says what one scheduler
    step is ("batch" or "epoch"). ``on_nan``: what a non-finite batch loss does (pause, stop
    or continue; the optimizer step is yours). ``lines``: print the headless lines on stdout.
    ``name`` (default: the script's file name) names the run and its directory.
    """
    return Run(
        model=model, optimizer=optimizer, scheduler=scheduler, epochs=epochs,
        steps_per_epoch=steps_per_epoch, name=name, run_dir=run_dir, resume=resume,
        interval=interval, on_nan=on_nan, checkpoint_every=checkpoint_every, lines=lines,
        config=config,
    )


class Run:
    """One tracked run. See ``track``."""

    def __init__(self, *, model: Any, optimizer: Any, scheduler: Any, epochs: int,
                 steps_per_epoch: int, name: str | None, run_dir: Any, resume: Any, interval: str,
                 on_nan: str, checkpoint_every: int, lines: bool, config: dict[str, Any] | None) -> None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise TrackError(f"epochs must be a positive integer, got {epochs!r}")
        if interval not in ("batch", "epoch"):
            raise TrackError(f"interval must be 'batch' or 'epoch', got {interval!r}")
        if on_nan not in ("pause", "stop", "continue"):
            raise TrackError(f"on_nan must be 'pause', 'stop' or 'continue', got {on_nan!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.total_epochs = epochs
        self.steps_per_epoch = int(steps_per_epoch or 0)
        if name is None:
            script = sys.argv[0] if sys.argv else ""
            name = Path(script).stem if script.endswith(".py") else "run"
        self.name, self.interval, self.on_nan = name, interval, on_nan
        self.checkpoint_every, self.lines = checkpoint_every, lines
        self.config = dict(config or {})
        self._run_dir_arg, self._resume_arg = run_dir, resume
        self.run_dir: Path | None = None
        self.epoch = 0  # completed epochs
        self.step = 0  # batches logged, across epochs
        self.batch_in_epoch = 0
        self.skip_batches = 0  # batches of the resumed epoch trained before the interruption
        self.stop_reason: str | None = None  # set when the run ended early
        self._buffer = BatchBuffer()
        self._scalars: dict[str, Any] | None = None
        self._in_epoch = False
        self._paused = False
        self._paused_at = 0.0
        self._pending_stop: str | None = None
        self._signals = loopstate.SignalStop(lambda signum: self.send(Stop("signal")))
        self._epoch_loss_sum, self._epoch_samples, self._epoch_trained = 0.0, 0, 0
        self._epoch_scalars: dict[str, list[float]] = {}  # name -> [weighted sum, weight]
        self._epoch_rng: dict[str, Any] | None = None
        self._epoch_started = 0.0
        self._chunk_start, self._last_flush = 0, 0.0
        self._server: Any = None
        self._from_cli = False
        self._step_lr: float | None = None
        self._read_cpu = True  # False: CPU losses take the device path too (tests)
        self._hooks: list[Any] = []
        self.recorder: Recorder | None = None
        # Several processes (the loop under torchrun): rank 0 owns the run, the others follow
        # its commands at the same steps (track_ranks.py).
        self._ranks: Any = None
        # A following rank's epoch loss sum and weight over its finite batches (tensors on
        # its device when the losses are: read once an epoch).
        self._rank_loss: Any = 0.0
        self._rank_weight: Any = 0

    # ------------------------------------------------------------------ context

    def __enter__(self) -> Run:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.end(exc)

    def start(self) -> None:
        """Open the run directory, serve its control socket and record the start."""
        global runs_started
        from cosinetui import track_ranks

        self._ranks = track_ranks.current()
        resume = self._take_environment()
        if self._ranks is not None and not self._ranks.leader:
            self._start_following(resume)
            return
        try:
            path = loopstate.prepare_dir(
                run_dir=self._run_dir_arg, resume=self._resume_arg, name=self.name,
                needs_checkpoint=self.model is not None,
                config=None if self._from_cli else loopstate.script_config(self.name, self.on_nan, self.checkpoint_every),
            )
        except ValueError as exc:
            raise TrackError(str(exc)) from None
        self.run_dir = path
        rec = self.recorder = Recorder(path)
        if self.lines:
            rec.listeners.append(Printer(lambda line: print(line, flush=True)))
        rec.open()
        from cosinetui.remote import RunServer, ServeError

        self._server = RunServer(path, rec.send)
        try:
            self._server.start()
        except ServeError as exc:
            rec.close()
            raise TrackError(str(exc)) from None
        rec.listeners.append(self._server.listener)
        try:
            if resume:
                self._load()
                rec.load_history()
        except BaseException:
            self._close()
            raise
        self._signals.install()
        self._watch_steps()
        runs_started += 1
        rec.emit(RunStarted(
            run_name=self.name, run_dir=str(path), device=str(self._device()),
            torch_version=torch.__version__,
            param_count=sum(p.numel() for p in self.model.parameters()) if self.model is not None else 0,
            epochs=self.total_epochs, steps_per_epoch=self.steps_per_epoch, interval=self.interval,
            schedule=self.scheduler.state_dict() if isinstance(self.scheduler, AdjustableCosineLR) else {},
            config=self.config, start_epoch=self.epoch, global_step=self.step, time=time.time(),
            loop="track",
            world_size=self._ranks.world if self._ranks is not None else 1,
            backend=torch.distributed.get_backend() if self._ranks is not None else None,
        ))
        rec.flush_log()
        self._chunk_start, self._last_flush = self.step, time.monotonic()

    def end(self, exc: BaseException | None = None) -> bool:
        """Record how the run ended; True when ``exc`` was a stop (to be swallowed)."""
        if self._follower:
            if exc is None and self._in_epoch and self.batch_in_epoch:
                self.log_epoch(_commands=False)  # as rank 0 does: its all-reduce needs ours
            self._signals.restore()
            if exc is None or isinstance(exc, RunStopped):
                self._ranks.finished()
            return isinstance(exc, RunStopped)
        rec = self.recorder
        if rec is None:
            return False
        clean = exc is None or isinstance(exc, RunStopped)
        try:
            if exc is None or isinstance(exc, (RunStopped, KeyboardInterrupt)):
                if exc is None:
                    if self._in_epoch and self.batch_in_epoch:
                        self.log_epoch(_commands=False)  # a loop that never closed its epoch
                    reason = "completed"
                elif isinstance(exc, KeyboardInterrupt):
                    reason = "signal"
                else:
                    reason = self._pending_stop or "stopped"
                self.stop_reason = None if reason == "completed" else reason
                self._flush()
                self._checkpoint("finished" if reason == "completed" else "stop")
                best = rec.history.best_epoch
                rec.emit(Finished(self.epoch, self.step, reason, best.val_loss if best else None))
            else:
                self._fail(exc)
        finally:
            self._close()
        if clean and self._ranks is not None:
            self._ranks.finished()
        signum = self._signals.received
        if signum is not None and isinstance(exc, RunStopped) and self._pending_stop == "signal":
            name = signal.Signals(signum).name
            print(f"stopped ({name}); resume with: cosinetui resume {self.run_dir}", file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)
        return isinstance(exc, RunStopped)

    # ------------------------------------------------------------------ the loop's calls

    def epochs(self) -> Iterator[int]:
        """Epoch indices (0-based, as ``range(epochs)``), from where a resumed run left off.

        An epoch whose body did not call ``log_epoch`` is closed when the next one begins.
        """
        while self.epoch < self.total_epochs:
            e = self.epoch
            self._begin_epoch()
            yield e
            if self._in_epoch and self.epoch == e:
                self.log_epoch()

    def log(self, name: str, value: Any) -> None:
        """A per-batch scalar (tokens/s, train accuracy...) for the batch ``log_batch`` closes
        next; a tensor stays on its device until the chunk is sent."""
        if self._scalars is None:
            self._scalars = {}
        self._scalars[str(name)] = value.detach() if isinstance(value, torch.Tensor) else float(value)

    def log_batch(self, loss: Any, batch_size: int = 1, *, lr: float | None = None) -> None:
        """Record one batch's loss (weighted by ``batch_size`` in the epoch's mean) and apply
        any commands: a pause blocks here, a stop raises RunStopped. ``lr``: the batch's LR
        when it is not group 0's at the optimizer's last step (recorded by default)."""
        if not self._in_epoch:
            self._begin_epoch()
        if self._follower:
            self._follow_batch(loss, batch_size)
            return
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise TrackError(f"log_batch needs a scalar loss, got a tensor of shape {tuple(loss.shape)}")
            # On the CPU reading the value stalls nothing; elsewhere it waits for the chunk.
            loss = loss.item() if self._read_cpu and loss.device.type == "cpu" else loss.detach()
        self._buffer.add(loss, self._batch_lr() if lr is None else lr, batch_size, self._scalars)
        self._scalars = None
        self.step += 1
        self.batch_in_epoch += 1
        self._epoch_trained += batch_size
        if time.monotonic() - self._last_flush >= CHUNK_SECONDS or len(self._buffer) >= CHUNK_MAX:
            self._flush()
        if self._ranks is not None:
            self._rank_check()
        elif self._paused or self._pending_stop is not None or self.recorder.has_commands():  # type: ignore[union-attr]
            self._between_batches()

    def log_epoch(self, val_loss: Any = None, metrics: dict[str, Any] | None = None,
                  train_loss: float | None = None, *, _commands: bool = True) -> None:
        """Close the epoch. ``train_loss`` defaults to the sample-weighted mean of its batches
        (over every rank's batches when several processes train)."""
        if not self._in_epoch:
            self._begin_epoch()
        if self._follower:
            self._ranks.epoch_loss(float(self._rank_loss), float(self._rank_weight), self._device())
            self.epoch += 1
            self.batch_in_epoch, self.skip_batches, self._in_epoch = 0, 0, False
            return
        self._flush()
        rec = self.recorder
        assert rec is not None
        seconds = time.perf_counter() - self._epoch_started
        lr = rec.history.lrs[-1] if self.batch_in_epoch and len(rec.history.lrs) else self._lr()
        total, weight = self._epoch_loss_sum, self._epoch_samples
        if self._ranks is not None:
            total, weight = self._ranks.epoch_loss(total, weight, self._device())
        if train_loss is None:
            train_loss = total / weight if weight else math.nan
        self.epoch += 1
        self.batch_in_epoch, self.skip_batches, self._in_epoch = 0, 0, False
        rec.emit(EpochEnd(
            epoch=self.epoch, train_loss=float(train_loss),
            val_loss=None if val_loss is None else float(val_loss), lr=lr, seconds=seconds,
            samples_per_s=self._epoch_trained / seconds if seconds > 0 else 0.0,
            step=self.step, metrics={str(k): float(v) for k, v in (metrics or {}).items()},
            train_metrics={k: total / weight if weight else math.nan
                           for k, (total, weight) in self._epoch_scalars.items()},
        ))
        every = self.checkpoint_every
        if every and (self.epoch % every == 0 or self.epoch == self.total_epochs):
            self._checkpoint("epoch")
        rec.flush_log()
        if _commands and self._ranks is None and (self._pending_stop is not None or rec.has_commands()):
            self._between_batches()

    def poll(self) -> None:
        """Apply pending commands without logging a batch (pause blocks, stop raises). With
        several ranks, every rank must call it at the same points of its loop (as log_batch):
        commands then apply at the same call on every rank."""
        if self._ranks is not None:
            self._rank_check()
            return
        if self._paused or self._pending_stop is not None or self.recorder.has_commands():  # type: ignore[union-attr]
            self._flush()
            self._between_batches()

    def send(self, command: Command) -> None:
        """Queue a command from any thread, as the control socket does."""
        assert self.recorder is not None, "the run has not started"
        self.recorder.send(command)

    # ------------------------------------------------------------------ internals

    def _begin_epoch(self) -> None:
        self._in_epoch = True
        if self.skip_batches:
            restore_rng(self._epoch_rng)  # the interrupted epoch again: the same data order
        else:
            self._epoch_rng = capture_rng()
            self._epoch_loss_sum, self._epoch_samples, self.batch_in_epoch = 0.0, 0, 0
            self._epoch_scalars = {}
            self._rank_loss, self._rank_weight = 0.0, 0
        self._epoch_trained = 0
        self._epoch_started = time.perf_counter()

    def _batch_lr(self) -> float:
        """The LR the batch trained with: group 0's at the optimizer's last step when one ran
        since the previous batch (so a scheduler stepped before log_batch does not shift it)."""
        lr, self._step_lr = self._step_lr, None
        return self._lr() if lr is None else lr

    def _watch_steps(self) -> None:
        opt = getattr(self.optimizer, "optimizer", self.optimizer)  # Lightning/accelerate wrappers
        if isinstance(opt, torch.optim.Optimizer):
            def before_step(optimizer: Any, args: Any, kwargs: Any) -> None:
                self._step_lr = optimizer.param_groups[0]["lr"]

            self._hooks.append(opt.register_step_pre_hook(before_step))

    def _lr(self) -> float:
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        if self.scheduler is not None and hasattr(self.scheduler, "get_last_lr"):
            return float(self.scheduler.get_last_lr()[0])
        return math.nan

    def _flush(self) -> None:
        if not len(self._buffer):
            return
        rec = self.recorder
        assert rec is not None
        first = self._chunk_start
        losses, lrs, weights, scalars = self._buffer.take()
        self._chunk_start, self._last_flush = self.step, time.monotonic()
        bad = False
        for v, w in zip(losses, weights, strict=True):
            if math.isfinite(v):
                self._epoch_loss_sum += v * w
                self._epoch_samples += w
            else:
                bad = True
        for name, column in scalars.items():
            acc = self._epoch_scalars.setdefault(name, [0.0, 0.0])
            for v, w in zip(column, weights, strict=True):
                if math.isfinite(v):
                    acc[0] += v * w
                    acc[1] += w
        rec.emit(chunk_event(self.epoch + 1, first, losses, lrs, self.batch_in_epoch, scalars))
        if bad and self.on_nan == "stop":
            self._pending_stop = "nan"
        elif bad and self.on_nan == "pause" and not self._paused:
            self._pause("nan")

    def _apply_queued(self) -> list[Command]:
        """Apply the commands queued so far (the control socket's, signals'); return them."""
        rec = self.recorder
        assert rec is not None
        commands = rec.take_commands()
        for cmd in commands:
            self._apply(cmd)
        if commands:
            rec.flush_log()
        return commands

    def _between_batches(self) -> None:
        rec = self.recorder
        assert rec is not None
        while True:
            self._apply_queued()
            if self._pending_stop is not None:
                raise RunStopped(self._pending_stop)
            if not self._paused:
                return
            rec.wait_for_command()

    def _pause(self, reason: str) -> None:
        self._paused, self._paused_at = True, time.perf_counter()
        self.recorder.emit(Paused(self.epoch + 1, self.step, reason=reason))  # type: ignore[union-attr]
        self._checkpoint("pause")
        self.recorder.flush_log()  # type: ignore[union-attr]

    def _apply(self, cmd: Command) -> None:
        rec = self.recorder
        assert rec is not None
        if isinstance(cmd, Pause):
            if not self._paused:
                self._flush()
                self._pause("user")
        elif isinstance(cmd, Resume):
            if self._paused:
                self._paused = False
                self._epoch_started += time.perf_counter() - self._paused_at
                rec.emit(Resumed(self.epoch + 1, self.step))
        elif isinstance(cmd, Stop):
            self._pending_stop = cmd.reason
        elif isinstance(cmd, SaveCheckpoint):
            if self.model is None:
                rec.emit(CommandRefused(to_json(cmd), "no checkpoints: track() was given no model"))
            else:
                self._flush()
                self._checkpoint("user")
        elif isinstance(cmd, AdjustSchedule):
            self._adjust(cmd)
        else:
            rec.emit(CommandRefused(to_json(cmd), f"unknown command {cmd!r}"))

    def _adjust(self, cmd: AdjustSchedule) -> None:
        rec = self.recorder
        assert rec is not None
        sched = self.scheduler
        if not isinstance(sched, AdjustableCosineLR):
            what = "no scheduler" if sched is None else f"a {type(sched).__name__}"
            rec.emit(CommandRefused(to_json(cmd), (
                f"this run's schedule cannot be adjusted: track() was given {what}, not a "
                "cosinetui.AdjustableCosineLR")))
            return
        try:
            sched.apply(cmd.op, dict(cmd.args))
        except (ValueError, TypeError) as exc:
            rec.emit(CommandRefused(to_json(cmd), str(exc)))
            return
        rec.emit(ScheduleChanged(
            step=sched.last_epoch, op=cmd.op, args=dict(cmd.args), schedule=sched.state_dict(),
            lrs=tuple(g["lr"] for g in sched.optimizer.param_groups),
        ))

    def _checkpoint(self, reason: str) -> None:
        if self.model is None or self.run_dir is None or self._follower:
            return
        path = self.run_dir / store.CHECKPOINT
        loopstate.save(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, counters={
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_loss": [float(self._epoch_loss_sum), int(self._epoch_samples)],
            "epoch_scalars": {k: [float(a), float(b)] for k, (a, b) in self._epoch_scalars.items()},
            "epoch_rng": self._epoch_rng if self.batch_in_epoch else None,
        })
        self.recorder.emit(CheckpointWritten(str(path), self.epoch, self.step, reason))  # type: ignore[union-attr]

    def _load(self) -> None:
        assert self.run_dir is not None
        if self.model is None:
            raise TrackError("resume needs the model (and optimizer, scheduler) to restore")
        ck = loopstate.load(self.run_dir / store.CHECKPOINT, model=self.model, optimizer=self.optimizer,
                            scheduler=self.scheduler, device=self._device())
        self.epoch, self.step = ck["epoch"], ck["step"]
        self.batch_in_epoch = self.skip_batches = ck["batch_in_epoch"]
        self._epoch_loss_sum, self._epoch_samples = ck["epoch_loss"]
        self._epoch_rng, self._epoch_scalars = ck.get("epoch_rng"), ck["epoch_scalars"]
        if not self.batch_in_epoch:
            restore_rng(ck["rng"])

    def _fail(self, exc: BaseException) -> None:
        rec = self.recorder
        assert rec is not None
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self._flush()
        except Exception:  # noqa: BLE001 - a loss that cannot be read is part of the failure
            self._buffer = BatchBuffer()
        try:
            self._checkpoint("failure")
        except Exception:  # noqa: BLE001 - the original failure is what matters
            tb += "\n(checkpoint on failure also failed)\n" + traceback.format_exc()
        rec.emit(Failed(self.epoch, self.step, f"{type(exc).__name__}: {exc}", tb))
        try:
            exc._cosinetui_recorded = True  # type: ignore[attr-defined]  # printed with the failed line
        except AttributeError:
            pass

    def _close(self) -> None:
        self._signals.restore()
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        if self._server is not None:
            self._server.close()
        if self.recorder is not None:
            self.recorder.close()

    def _device(self) -> torch.device:
        if self.model is not None:
            for p in self.model.parameters():
                return p.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ other ranks

    @property
    def _follower(self) -> bool:
        """A rank other than 0 of several."""
        return self._ranks is not None and not self._ranks.leader

    def _start_following(self, resume: bool) -> None:
        """A rank other than 0: no directory, log or socket; the same state on a resume."""
        # A stop signal (torchrun forwards it to every rank) is acted on by rank 0, which
        # tells this rank at the next check; a second one still exits at once.
        self._signals = loopstate.SignalStop(lambda signum: None)
        self._signals.install()
        if resume:
            try:
                self.run_dir = loopstate.check_resume_dir(self._resume_arg, needs_checkpoint=self.model is not None)
            except ValueError as exc:
                raise TrackError(str(exc)) from None
            self._load()  # the checkpoint's partial epoch sums are rank 0's: this rank's own start at 0

    def _follow_batch(self, loss: Any, batch_size: int) -> None:
        # Finite losses only, as rank 0 counts them; summed where the loss lives (no host sync
        # per batch).
        if isinstance(loss, torch.Tensor):
            value = loss.detach().reshape(())
            finite = torch.isfinite(value)
            self._rank_loss = self._rank_loss + torch.where(finite, value * batch_size, 0.0)
            self._rank_weight = self._rank_weight + finite * batch_size
        elif math.isfinite(loss):
            self._rank_loss += float(loss) * batch_size
            self._rank_weight += batch_size
        self._scalars = None
        self.step += 1
        self.batch_in_epoch += 1
        self._epoch_trained += batch_size
        self._rank_check()

    def _rank_check(self) -> None:
        """At a check (the same call on every rank): rank 0 applies and tells, the others
        follow; a stop raises on every rank."""
        ranks = self._ranks
        if not ranks.tick():
            return
        if self._follower:
            stop = ranks.follow(self)
            if stop is not None:
                self._pending_stop = stop
        else:
            ranks.lead(self)
        if self._pending_stop is not None:
            raise RunStopped(self._pending_stop)

    # ------------------------------------------------------------------ set-up

    def _take_environment(self) -> bool:
        """Apply what `cosinetui run script.py` set; return whether to resume."""
        env = loopstate.take_environment()
        if env.get("run_dir"):
            self._from_cli = True
            self._run_dir_arg = env["run_dir"]
            self._resume_arg = env["run_dir"] if env.get("resume") else None
        self.on_nan = env.get("on_nan", self.on_nan)
        self.checkpoint_every = env.get("checkpoint_every", self.checkpoint_every)
        self.name = env.get("name", self.name)
        return self._resume_arg is not None
