"""``CosineTUICallback`` for Lightning: ``L.Trainer(callbacks=[CosineTUICallback()])``.

It records the ``loss`` each training step returns (per batch, on the device until a chunk is
sent), each epoch's train and val losses and the other logged scalars, and the LR of the first
optimizer, in a run directory that ``cosinetui attach``, ``show``, ``ls`` and ``diagnose``
read. Pause and stop take effect at batch boundaries (a stop through ``trainer.should_stop``);
schedule adjustments work when ``configure_optimizers`` returns an ``AdjustableCosineLR``.
With several processes (``strategy="ddp"``) every rank applies each command at the same batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from cosinetui.device import batch_size
from cosinetui.tracking import Run, RunStopped, track


class CosineTUICallback(pl.Callback):
    """``train_loss``/``val_loss``: the names your module logs them under. The epoch's train
    loss is ``<train_loss>_epoch`` when logged with ``on_epoch=True``, else the sample-weighted
    mean of the step losses. Other keyword arguments go to ``cosinetui.track()`` (``name``,
    ``run_dir``, ``on_nan``, ``checkpoint_every``, ``lines``)."""

    def __init__(self, *, train_loss: str = "train_loss", val_loss: str = "val_loss",
                 name: str = "lightning", **track_options: Any) -> None:
        self.train_key, self.val_key = train_loss, val_loss
        self.name = name
        self.track_options = track_options
        self.run: Run | None = None
        self._stop: RunStopped | None = None

    # ------------------------------------------------------------------ hooks

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # On every rank with DDP: rank 0 records the run, the others apply its commands at the
        # same batch (a stop sets should_stop on every rank, or the others would hang).
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        configs = trainer.lr_scheduler_configs
        scheduler = configs[0].scheduler if configs else None
        interval = "epoch" if configs and configs[0].interval == "epoch" else "batch"
        steps = trainer.num_training_batches
        steps = int(steps) if isinstance(steps, int) or (isinstance(steps, float) and math.isfinite(steps)) else 0
        epochs = trainer.max_epochs
        if epochs is None or epochs < 1:  # a run limited by max_steps
            epochs = max(1, math.ceil(trainer.max_steps / steps)) if steps and trainer.max_steps > 0 else 1
        self._stop = None
        self.run = track(model=pl_module, optimizer=optimizer, scheduler=scheduler, epochs=epochs,
                         steps_per_epoch=steps, interval=interval, name=self.name, **self.track_options)
        self.run.start()
        self.run.epoch = max(self.run.epoch, trainer.current_epoch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self.run is None or self._stop is not None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return  # the step was skipped (training_step returned None)
        self._guard(trainer, lambda: self.run.log_batch(loss, batch_size=batch_size(batch)))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None or self._stop is not None:
            return
        logged = {k: v for k, v in trainer.callback_metrics.items() if _scalar(v)}
        val = _pick(logged, self.val_key)
        train = _pick(logged, self.train_key, epoch_only=True)
        skip = {self.val_key, self.train_key}
        metrics = {
            k.removesuffix("_epoch"): float(v) for k, v in logged.items()
            if not k.endswith("_step") and k.removesuffix("_epoch") not in skip
        }
        self._guard(trainer, lambda: self.run.log_epoch(val_loss=val, metrics=metrics, train_loss=train))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.end(self._stop)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.end(exception)

    # ------------------------------------------------------------------ helpers

    def _guard(self, trainer: pl.Trainer, call: Any) -> None:
        try:
            call()
        except RunStopped as stop:
            self._stop = stop
            trainer.should_stop = True  # Lightning ends after this batch


def _scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pick(logged: dict[str, Any], key: str, epoch_only: bool = False) -> float | None:
    for name in (f"{key}_epoch",) if epoch_only else (f"{key}_epoch", key):
        if name in logged:
            return float(logged[name])
    return None
