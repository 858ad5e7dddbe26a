"""``CosineTUICallback`` for Hugging Face ``transformers.Trainer``:
``Trainer(..., callbacks=[CosineTUICallback()])``.

The Trainer reads the training loss to the host only when it logs (every ``logging_steps``
optimizer steps) and hands callbacks no per-step loss, so each logged loss (the mean over its
window) is recorded for every step of the window, with each step's own LR: with
``logging_steps=1`` the curve is per step. Evaluation results (``eval_loss`` and the other
``eval_*`` metrics) close the epoch. Pause and stop take effect after an optimizer step (a
stop through ``control.should_training_stop``); schedule adjustments work when the Trainer is
given ``optimizers=(optimizer, AdjustableCosineLR(optimizer, ...))``.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from cosinetui.tracking import Run, RunStopped, track


class CosineTUICallback(TrainerCallback):
    """Keyword arguments go to ``cosinetui.track()`` (``name``, ``run_dir``, ``on_nan``,
    ``checkpoint_every``, ``lines``); ``val_loss`` names the evaluation metric used as the
    epoch's val loss."""

    def __init__(self, *, val_loss: str = "eval_loss", name: str = "transformers", **track_options: Any) -> None:
        self.val_key = val_loss
        self.name = name
        self.track_options = track_options
        self.run: Run | None = None
        self._stop: RunStopped | None = None
        self._step_lrs: list[float] = []  # LRs of the steps whose loss is not logged yet
        self._epoch_ended = False
        self._optimizer: Any = None
        self._batch = 1

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       lr_scheduler: Any = None, train_dataloader: Any = None, **kwargs: Any) -> None:
        # On every rank with several processes: rank 0 records the run, the others apply its
        # commands at the same step (a stop on rank 0 alone would leave them hanging).
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
        accumulate = max(1, args.gradient_accumulation_steps)
        try:
            steps = max(1, len(train_dataloader) // accumulate)
        except TypeError:
            steps = 0
        if args.max_steps and args.max_steps > 0:
            epochs = max(1, math.ceil(args.max_steps / steps)) if steps else 1
        else:
            epochs = max(1, math.ceil(args.num_train_epochs))
        self._optimizer = inner
        self._batch = args.per_device_train_batch_size * accumulate
        self._stop, self._step_lrs, self._epoch_ended = None, [], False
        self.run = track(model=model, optimizer=inner, scheduler=scheduler, epochs=epochs,
                         steps_per_epoch=steps, interval="batch", name=self.name, **self.track_options)
        self.run.start()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None and self._optimizer is not None:
            self._step_lrs.append(float(self._optimizer.param_groups[0]["lr"]))  # before the scheduler's step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.run is not None and self._stop is None:
            self._guard(control, self.run.poll)
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if self.run is None or not logs or "loss" not in logs or self._stop is not None:
            return control
        loss, lrs, self._step_lrs = float(logs["loss"]), self._step_lrs, []
        run = self.run

        def record() -> None:
            for i, lr in enumerate(lrs):
                if i == len(lrs) - 1 and isinstance(logs.get("grad_norm"), (int, float)):
                    run.log("grad_norm", logs["grad_norm"])
                run.log_batch(loss, batch_size=self._batch, lr=lr)

        self._guard(control, record)
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch_ended = self.run is not None  # closed by the evaluation that follows, if any

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        if self.run is None or self._stop is not None or not self._epoch_ended:
            return control  # an evaluation within the epoch (eval_strategy="steps")
        metrics = dict(metrics or {})
        val = metrics.pop(self.val_key, None)
        extra = {
            k.removeprefix("eval_"): float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not k.endswith(("_runtime", "_per_second")) and k != "epoch"
        }
        self._close_epoch(control, val, extra)
        return control

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.run is not None and self._stop is None and self._epoch_ended:
            self._close_epoch(control, None, {})
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        if self._stop is None and (self._epoch_ended or run.batch_in_epoch):
            try:
                run.log_epoch()
            except RunStopped as stop:
                self._stop = stop
        run.end(self._stop)

    # ------------------------------------------------------------------ helpers

    def _close_epoch(self, control: Any, val: Any, metrics: dict[str, float]) -> None:
        self._epoch_ended = False
        self._guard(control, lambda: self.run.log_epoch(val_loss=val, metrics=metrics))

    def _guard(self, control: Any, call: Any) -> None:
        try:
            call()
        except RunStopped as stop:
            self._stop = stop
            control.should_training_stop = True
