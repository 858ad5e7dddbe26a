"""The training loop. It runs in the main thread of its own process (under the dashboard, a
child process: a thread beside the UI would share the interpreter lock and train slower), emits
events and applies commands between batches. Read ``_run`` top to bottom for the whole story.

Host syncs: on CUDA and MPS, batch losses (and per-batch scalars such as gradient norms) stay
on the device and are copied to the host once per chunk (about ten times a second), never per
batch. On the CPU, where reading a value stalls nothing, each is read as a float when its batch
ends. One batch's forward, backward and optimizer step are in stepper.py.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cosinetui import distributed, store
from cosinetui.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    save_weights,
)
from cosinetui.device import batch_size, pick_device, to_device
from cosinetui.diagnostics import Monitor
from cosinetui.events import (
    AdjustSchedule,
    BatchChunk,
    CheckpointWritten,
    Command,
    CommandRefused,
    EpochEnd,
    Event,
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
from cosinetui.experiment import Experiment
from cosinetui.history import History
from cosinetui.recorder import CHUNK_MAX, CHUNK_SECONDS
from cosinetui.schedule import AdjustableCosineLR
from cosinetui.stepper import Stepper

# A skipped non-finite step, or a resume at an epoch's last batch, legitimately steps the
# scheduler before the optimizer; torch's order warning would only confuse the user.
warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")


@dataclass
class TrainerOptions:
    run_dir: Path
    device: str = "auto"
    amp: bool = False
    on_nan: str = "pause"  # pause | stop | continue
    checkpoint_every: int = 1  # epochs; 0 = only on stop/pause/signal/end
    resume: bool = False
    # Written to config.json once the run is certain to start (its checkpoint loaded), so a
    # refused start leaves the recorded settings as they were; None: keep the file as it is.
    config: dict[str, Any] | None = None


class _StopTraining(Exception):
    pass


_END_OF_EPOCH = object()


class Trainer:
    """Trains ``experiment``; ``listeners`` receive every event (from the training thread).

    Every event is also appended to the run's metrics log, which is flushed at each epoch end
    and after each command, so the log and the live consumers see the same stream.
    """

    def __init__(
        self,
        experiment: Experiment,
        options: TrainerOptions,
        listeners: list[Callable[[Event], None]] | None = None,
    ) -> None:
        self.exp = experiment
        self.opts = options
        self.listeners = list(listeners or [])
        self.run_dir = Path(options.run_dir)
        self.device = pick_device(options.device)
        self.ranks = distributed.current()  # None for a single process
        if self.ranks is not None:
            self.device = self.ranks.device
        self._quiet = self.ranks is not None and not self.ranks.is_main  # rank 0 alone writes
        # On the CPU each loss is read at once (a float read costs nothing there); elsewhere
        # losses stay on the device until a chunk is flushed (no per-batch host sync).
        self._on_host = self.device.type == "cpu"
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._paused = False
        self._paused_at = 0.0  # perf_counter() when the current pause began
        self._stop_reason: str | None = None
        self.history = History()
        self.monitor = Monitor()
        self.epoch = 0  # completed epochs
        self.step = 0  # global batches trained
        self.batch_in_epoch = 0
        self._pending: list[torch.Tensor | float] = []  # floats on the CPU, else tensors
        self._pending_lrs: list[float] = []
        self._pending_weights: list[int] = []
        # Per-batch scalars by name, each aligned with _pending (NaN where a batch has none).
        self._pending_scalars: dict[str, list[torch.Tensor | float]] = {}
        self._epoch_scalars: dict[str, list[float]] = {}  # name -> [weighted sum, weight]
        self.optimizer_steps = 0
        self._chunk_start = 0
        self._last_flush = 0.0
        self._epoch_loss_sum = 0.0
        self._epoch_samples = 0
        self._epoch_rng: dict[str, Any] | None = None
        self._training = False  # set once the run has started (after any resume load)
        self._saved: tuple[int, int, int] | None = None  # (epoch, step, batch) of the checkpoint on disk

    # ------------------------------------------------------------------ outside API

    def send(self, command: Command) -> None:
        """Thread-safe: the command is applied at the next batch boundary."""
        self._commands.put(command)
        self._wake.set()

    def request_stop(self, reason: str = "stopped") -> None:
        self.send(Stop(reason))

    def run(self) -> None:
        """The thread body. Never raises: a failure becomes a ``Failed`` event."""
        try:
            if self._quiet:
                self.log = distributed.NullLog()
            else:
                self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.log = store.MetricsLog(self.run_dir / store.METRICS)
                # Whoever runs this trainer holds the run (the control socket's lock, or a
                # fresh directory), so a temp file here is a leftover of a killed process.
                store.remove_stale_temp_files(self.run_dir)
        except (OSError, store.RunDirError) as exc:
            event = Failed(0, 0, f"cannot write the run directory: {exc}")
            for listener in self.listeners:
                listener(event)
            return
        try:
            try:
                self._run()
            except _StopTraining:
                self._finish(self._stop_reason or "stopped")
        except Exception as exc:  # the end's own checkpoint or log write fails the run too
            self._fail(exc)
        finally:
            self.log.close()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        exp = self.exp
        if exp.seed is not None:
            torch.manual_seed(exp.seed)
        self.model = exp.model.to(self.device)
        self.optimizer = exp.make_optimizer()
        exp.validate()
        exp.check_floor(self.optimizer)
        if self.ranks is not None:
            exp = self.exp = self.ranks.shard(exp)
        steps_per_epoch = _len_or_zero(exp.train_data)
        t_max = exp.schedule_length()
        self.scheduler = AdjustableCosineLR(
            self.optimizer,
            T_max=t_max,
            eta_min=exp.eta_min,
            warmup_steps=exp.warmup,
            warmup_start_factor=exp.warmup_start_factor,
            restarts=exp.restarts,
            T_mult=exp.T_mult,
        )
        self.amp_dtype, self.scaler = self._amp_setup()
        self.stepper = Stepper(
            self.model,
            self.optimizer,
            self._forward,
            device=self.device,
            on_host=self._on_host,
            amp_dtype=self.amp_dtype,
            scaler=self.scaler,
            accumulate=exp.accumulate,
            max_grad_norm=exp.max_grad_norm,
            ranks=self.ranks if self.scaler is None else None,
        )
        self._planned_epochs = exp.planned_epochs()
        skip_batches = 0
        if self.opts.resume:
            skip_batches = self._load()
            # The run so far, as recorded: best val, alert episodes and the diagnostics' view
            # continue from it instead of starting blind (alerts already raised stay quiet).
            self.history.extend(store.read_log(self.run_dir).events)
            self.monitor.update(self.history)
        config = self.opts.config
        if config is not None and not self._quiet:
            store.write_config(self.run_dir, config)
        elif (self.run_dir / store.CONFIG).exists():
            config = store.read_config(self.run_dir)
        if self.ranks is not None:
            self.model = self.ranks.wrap(self.model)
            self.stepper.ddp = self.model  # to skip the all-reduce inside a window
        self._emit(
            RunStarted(
                run_name=exp.name,
                run_dir=str(self.run_dir),
                device=str(self.device),
                torch_version=torch.__version__,
                param_count=sum(p.numel() for p in self.model.parameters()),
                epochs=self._planned_epochs,
                steps_per_epoch=steps_per_epoch,
                interval=exp.interval,
                schedule=self.scheduler.state_dict(),
                config=config or {},
                start_epoch=self.epoch,
                global_step=self.step,
                time=time.time(),
                world_size=self.ranks.world_size if self.ranks is not None else 1,
                backend=self.ranks.backend if self.ranks is not None else None,
            )
        )
        self.log.flush()
        self._training = True
        epoch = self.epoch
        while self._more_epochs(epoch):
            trained = self.step
            self._train_epoch(epoch + 1, skip_batches)
            skip_batches = 0
            val_loss, metrics = self._validate()
            self._end_epoch(epoch + 1, val_loss, metrics)
            epoch += 1
            if self.step == trained and self.exp.max_steps is not None:
                break  # a pass with no batches would never reach max_steps
        self._finish("completed")

    def _more_epochs(self, done: int) -> bool:
        """Whether another epoch is due after ``done``: by count, or until max_steps steps."""
        if self.exp.max_steps is None:
            return done < self.exp.epochs
        return self.optimizer_steps < self.exp.max_steps

    def _train_epoch(self, epoch: int, skip: int) -> None:
        exp = self.exp
        self.model.train()
        if self.ranks is not None:
            self.ranks.set_epoch(exp.train_data, epoch)
        if skip:
            # Resuming mid-epoch: replay the loader's order from the epoch's start, skip what
            # was already trained, then continue with the RNG state of the interruption.
            restore_rng(self._epoch_rng)
            batches = iter(exp.train_data)
            for _ in range(skip):
                next(batches)
            restore_rng(self._resume_rng)
        else:
            self._epoch_rng = capture_rng()
            self._epoch_loss_sum, self._epoch_samples = 0.0, 0
            self._epoch_scalars = {}
            self.batch_in_epoch = 0
            batches = iter(exp.train_data)
        self._epoch_started = time.perf_counter()
        self._epoch_trained_samples = 0
        self._chunk_start, self._last_flush = self.step, time.monotonic()
        k, per_pass = exp.accumulate, _len_or_zero(exp.train_data)
        while True:
            # Flushed before a batch rather than after one, so that the epoch's last batch is
            # still pending when a leftover accumulation window steps after the loop.
            if time.monotonic() - self._last_flush >= CHUNK_SECONDS or len(self._pending) >= CHUNK_MAX:
                self._flush_batches(epoch)
            # Commands first, then the fetch: a checkpoint taken here holds the RNG state
            # before the next batch draws from it (a loader sampling with torch.randint, an
            # augmentation in a Dataset), so a resume from it fetches the same batch.
            self._between_batches(epoch)
            batch = next(batches, _END_OF_EPOCH)
            if batch is _END_OF_EPOCH:
                break
            lr = self.optimizer.param_groups[0]["lr"]
            n = batch_size(batch)
            # A window of k batches ends with one optimizer step; so does a pass's last batch.
            steps = (self.batch_in_epoch + 1) % k == 0 or self.batch_in_epoch + 1 == per_pass
            loss, scalars = self.stepper.train(to_device(batch, self.device), steps)
            self._pending.append(loss)
            self._pending_lrs.append(lr)
            self._pending_weights.append(n)
            if scalars or self._pending_scalars:
                self._add_scalars(scalars)
            self.step += 1
            self.batch_in_epoch += 1
            self._epoch_trained_samples += n
            if steps:
                self._stepped()
                if exp.max_steps is not None and self.optimizer_steps >= exp.max_steps:
                    break
        if self.stepper.micro:  # a pass without len() ended inside a window
            norm = self.stepper.step()
            if norm is not None:
                self._pending_scalars.setdefault("grad_norm", [math.nan] * len(self._pending))[-1] = norm
            self._stepped()
        self._flush_batches(epoch)
        self._between_batches(epoch)

    def _stepped(self) -> None:
        self.optimizer_steps += 1
        if self.exp.interval == "batch":
            self.scheduler.step()

    def _add_scalars(self, scalars: dict[str, torch.Tensor | float]) -> None:
        """Record a batch's scalars (its loss is already pending), NaN for names it lacks."""
        n = len(self._pending)
        for name, value in scalars.items():
            self._pending_scalars.setdefault(name, [math.nan] * (n - 1)).append(value)
        for values in self._pending_scalars.values():
            if len(values) < n:
                values.append(math.nan)

    def _forward(self, batch: Any) -> torch.Tensor:
        exp = self.exp
        if exp.train_step is not None:
            return exp.train_step(self.model, batch)
        return exp.loss_fn(self.model(batch[0]), batch[1])

    def _flush_batches(self, epoch: int) -> None:
        """Emit the pending batch losses as a chunk (from a device: in one transfer)."""
        if not self._pending:
            return
        losses, scalars = _to_host(self._pending, self._pending_scalars, self.device)
        lrs, weights = tuple(self._pending_lrs), self._pending_weights
        self._pending, self._pending_lrs, self._pending_weights = [], [], []
        self._pending_scalars = {}
        first = self._chunk_start
        self._chunk_start, self._last_flush = self.step, time.monotonic()
        bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
        for v, w in zip(losses, weights, strict=True):
            if math.isfinite(v):
                self._epoch_loss_sum += v * w
                self._epoch_samples += w
        for name, values in scalars.items():
            total = self._epoch_scalars.setdefault(name, [0.0, 0.0])
            for v, w in zip(values, weights, strict=True):
                if math.isfinite(v):
                    total[0] += v * w
                    total[1] += w
        self._emit(BatchChunk(epoch, first, tuple(losses), lrs, self.batch_in_epoch, scalars))
        if bad and self.opts.on_nan != "continue":
            step = first + bad[0]
            if self.ranks is not None:
                self.ranks.report_nan(step, self.opts.on_nan)  # applied by every rank at once
            elif self.opts.on_nan == "stop":
                self._stop_reason = "nan"
            else:
                self._paused, self._paused_at = True, time.perf_counter()
                self._emit(Paused(epoch, step, reason="nan"))
                self._checkpoint("pause")
                self.log.flush()

    def _validate(self) -> tuple[float | None, dict[str, float]]:
        exp = self.exp
        if exp.val_data is None:
            return None, {}
        self.model.eval()
        model = distributed.unwrap(self.model)  # no DDP collectives: shards may differ in length
        total = torch.zeros((), device=self.device)
        sums = {name: torch.zeros((), device=self.device) for name in exp.metrics}
        count = 0
        with torch.no_grad(), torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            for batch in exp.val_data:
                n = batch_size(batch)
                batch = to_device(batch, self.device)
                if exp.eval_step is not None:
                    out = exp.eval_step(model, batch)
                    loss, outputs, targets = out if isinstance(out, tuple) else (out, None, None)
                else:
                    outputs, targets = model(batch[0]), batch[1]
                    loss = exp.loss_fn(outputs, targets)
                total += loss.detach().float() * n
                if outputs is not None:
                    for name, fn in exp.metrics.items():
                        sums[name] += torch.as_tensor(fn(outputs, targets), device=self.device).float() * n
                count += n
        stacked = torch.stack([total, *sums.values(), torch.tensor(float(count), device=self.device)])
        if self.ranks is not None:
            self.ranks.sum_(stacked)  # the whole val set's sums
        values = stacked.cpu().tolist()  # one host sync
        count = values.pop()
        if count == 0:
            return None, {}
        return values[0] / count, {k: v / count for k, v in zip(sums, values[1:], strict=True)}

    def _end_epoch(self, epoch: int, val_loss: float | None, metrics: dict[str, float]) -> None:
        seconds = time.perf_counter() - self._epoch_started
        # The LR of the epoch's last batch (its chunk is already out); none for an empty epoch.
        lr = self.history.lrs[-1] if len(self.history.lrs) else self.optimizer.param_groups[0]["lr"]
        loss_sum, samples, trained = self._epoch_loss_sum, self._epoch_samples, self._epoch_trained_samples
        if self.ranks is not None:  # once an epoch: the mean over every rank's samples
            loss_sum, samples, trained = self.ranks.sum_floats([loss_sum, samples, trained])
        train = loss_sum / samples if samples else math.nan
        if self.exp.interval == "epoch":
            self.scheduler.step()
        self.epoch, self.batch_in_epoch = epoch, 0
        self._emit(
            EpochEnd(
                epoch=epoch,
                train_loss=train,
                val_loss=val_loss,
                lr=lr,
                seconds=seconds,
                samples_per_s=trained / seconds if seconds > 0 else 0.0,
                step=self.step,
                metrics=metrics,
                train_metrics={
                    name: total / weight if weight else math.nan
                    for name, (total, weight) in self._epoch_scalars.items()
                },
            )
        )
        best = self.history.best_epoch
        if best is not None and best.epoch == epoch:
            self._save_best(epoch)
        every = self.opts.checkpoint_every
        if every and (epoch % every == 0 or not self._more_epochs(epoch)):
            self._checkpoint("epoch")
        self.log.flush()

    # ------------------------------------------------------------------ commands

    def _between_batches(self, epoch: int) -> None:
        """Apply queued commands; while paused, block (no busy wait) until resumed or stopped."""
        if self.ranks is not None:  # commands go through every rank, at the same step
            if self.ranks.between_batches(self, epoch):
                raise _StopTraining
            return
        if not self._paused and self._stop_reason is None and self._commands.empty():
            return  # the common case, once a batch: no lock taken, no exception raised
        while True:
            self._wake.clear()
            handled = False
            while True:
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    break
                handled = True
                self._apply(cmd, epoch)
            if handled:
                self.log.flush()
            if self._stop_reason is not None:
                raise _StopTraining
            if not self._paused:
                return
            self._wake.wait()

    def _apply(self, cmd: Command, epoch: int) -> None:
        if isinstance(cmd, Pause):
            if not self._paused:
                self._flush_batches(epoch)
                self._paused, self._paused_at = True, time.perf_counter()
                self._emit(Paused(epoch, self.step, reason="user"))
                self._checkpoint("pause")
        elif isinstance(cmd, Resume):
            if self._paused:
                self._paused = False
                # Time paused (its checkpoint included) is not the epoch's: its seconds,
                # samples/s and the ETA from them count training and validation only.
                self._epoch_started += time.perf_counter() - self._paused_at
                self._emit(Resumed(epoch, self.step))
        elif isinstance(cmd, Stop):
            self._stop_reason = cmd.reason
        elif isinstance(cmd, SaveCheckpoint):
            self._flush_batches(epoch)
            self._checkpoint("user")
        elif isinstance(cmd, AdjustSchedule):
            try:
                self.scheduler.apply(cmd.op, dict(cmd.args))
            except (ValueError, TypeError) as exc:
                self._emit(CommandRefused(to_json(cmd), str(exc)))
                return
            state = self.scheduler.state_dict()
            self._emit(
                ScheduleChanged(
                    step=self.scheduler.last_epoch,
                    op=cmd.op,
                    args=dict(cmd.args),
                    schedule=state,
                    lrs=tuple(g["lr"] for g in self.optimizer.param_groups),
                )
            )
        else:
            self._emit(CommandRefused(to_json(cmd), f"unknown command {cmd!r}"))

    # ------------------------------------------------------------------ events and state

    def _emit(self, event: Event) -> None:
        if self._quiet and not isinstance(event, Failed):
            return  # rank 0 reports the run; another rank speaks only of its own failure
        self.log.write(event)
        if isinstance(event, (Finished, Failed)):
            self.log.flush()  # whoever sees the end can read the complete log
        self.history.apply(event)
        for listener in self.listeners:
            listener(event)
        if isinstance(event, (BatchChunk, EpochEnd)):
            for alert in self.monitor.update(self.history):
                self._emit(alert)

    def _checkpoint(self, reason: str) -> None:
        if self._quiet:
            return
        path = self.run_dir / store.CHECKPOINT
        try:
            self._save_checkpoint(path)
        except store.WriteError as exc:
            if self._saved is None:
                kept = "no checkpoint had been written yet"
            else:
                epoch, step, batch = self._saved
                where = f"epoch {epoch}" if not batch else f"epoch {epoch + 1}, step {step}"
                kept = f"the previous checkpoint ({where}) is intact"
            exc.args = (f"{exc.args[0]}; {kept}",)
            raise
        self._saved = (self.epoch, self.step, self.batch_in_epoch)
        self._emit(CheckpointWritten(str(path), self.epoch, self.step, reason))

    def _save_checkpoint(self, path: Path) -> None:
        save_checkpoint(
            path,
            model=distributed.unwrap(self.model),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            epoch=self.epoch,
            step=self.step,
            batch_in_epoch=self.batch_in_epoch,
            epoch_loss=(self._epoch_loss_sum, self._epoch_samples),
            epoch_rng=self._epoch_rng if self.batch_in_epoch else None,
            optimizer_steps=self.optimizer_steps,
            epoch_scalars=self._epoch_scalars,
            world_size=self.ranks.world_size if self.ranks is not None else 1,
        )

    def _save_best(self, epoch: int) -> None:
        """The weights of the best val epoch so far, next to the checkpoint (atomically)."""
        if self._quiet:
            return
        path = self.run_dir / store.BEST
        save_weights(path, distributed.unwrap(self.model), epoch=epoch, step=self.step, val_loss=self.history.best_epoch.val_loss)
        self._emit(CheckpointWritten(str(path), epoch, self.step, "best"))

    def _load(self) -> int:
        ck = load_checkpoint(self.run_dir / store.CHECKPOINT, self.device)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.step = ck["epoch"], ck["step"]
        self.batch_in_epoch = ck["batch_in_epoch"]
        self._saved = (self.epoch, self.step, self.batch_in_epoch)
        self._epoch_loss_sum, self._epoch_samples = ck["epoch_loss"]
        # Checkpoints from before these were kept: one optimizer step per batch, no scalars.
        self.optimizer_steps = ck.get("optimizer_steps", self.step)
        self._epoch_scalars = ck.get("epoch_scalars") or {}
        self._epoch_rng = ck.get("epoch_rng")
        self._resume_rng = ck["rng"]
        if self.batch_in_epoch == 0:
            restore_rng(ck["rng"])
        return distributed.after_load(self, ck)

    def _amp_setup(self) -> tuple[torch.dtype | None, Any]:
        if not self.opts.amp:
            return None, None
        if self.device.type != "cuda":
            raise ValueError(f"--amp needs a CUDA device (this run uses {self.device})")
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None  # no loss scaling needed, so no per-step host sync
        return torch.float16, torch.amp.GradScaler("cuda")

    def _finish(self, reason: str) -> None:
        self._flush_batches(self.epoch + 1)
        self._checkpoint("stop" if reason != "completed" else "finished")
        best = self.history.best_epoch
        self._emit(
            Finished(self.epoch, self.step, reason, best.val_loss if best else None)
        )

    def _fail(self, exc: BaseException) -> None:
        """End the run with a ``failed`` record; never raises. A write error (a full disk)
        is one line, no traceback: the message says which file and what was kept."""
        if isinstance(exc, store.WriteError):
            error, tb = str(exc), ""
        else:
            error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
        try:
            self._pending.clear()
            # Only a run that got as far as training has a state worth saving: a failure
            # while building or loading must not replace the checkpoint being resumed.
            if self._training:
                self._checkpoint("failure")
        except store.WriteError as again:
            if not (isinstance(exc, store.WriteError) and exc.what == again.what):
                error += f"; the checkpoint could not be written either: {again}"
        except Exception:  # noqa: BLE001 - the original failure is what matters
            tb += "\n(checkpoint on failure also failed)\n" + traceback.format_exc()
        event = Failed(self.epoch, self.step, error, tb)
        try:
            self._emit(event)
        except store.WriteError as lost:
            # The log cannot take its end: those watching still learn how the run ended.
            event = Failed(self.epoch, self.step, f"{error}; the metrics log could not record this end ({lost})", tb)
            self.history.apply(event)
            for listener in self.listeners:
                listener(event)


def _to_host(
    losses: list[torch.Tensor | float], scalars: dict[str, list[torch.Tensor | float]], device: torch.device
) -> tuple[list[float], dict[str, list[float]]]:
    """Losses and scalars as floats, the device's values copied to the host in one transfer."""
    columns = [losses, *scalars.values()]
    tensors = [v for column in columns for v in column if isinstance(v, torch.Tensor)]
    if tensors:
        host = iter(torch.stack([t.to(device) for t in tensors]).cpu().tolist())
        columns = [[next(host) if isinstance(v, torch.Tensor) else v for v in column] for column in columns]
    return columns[0], dict(zip(scalars, columns[1:], strict=True))  # type: ignore[arg-type]


def _len_or_zero(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 0
