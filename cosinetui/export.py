"""A run in the formats other tools read: CSV (one row an epoch, optionally one a batch) and
TensorBoard event files written by torch's ``SummaryWriter`` (docs/usage.md, "Export").

The TensorBoard export holds every batch loss and LR (``batch/loss``, ``batch/lr``), each
epoch's values at the step of its last batch (``epoch``, ``epoch/train_loss``,
``epoch/val_loss``, ``epoch/lr``, ``epoch/seconds``, ``metrics/<name>``), the diagnostics'
alerts as text (``alerts``), and the run's own records (``cosinetui/run``: its start,
schedule changes and end as JSON lines), so that reading the export back gives the same
history and the same alerts. Scalars are written as float64 (tensor summaries), not rounded
to float32.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

from cosinetui.events import RunStarted, to_json
from cosinetui.history import History
from cosinetui.store import atomic_write

EPOCH_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "lr", "seconds", "samples_per_s"]


class ExportError(Exception):
    """An export that cannot be written; the message says why."""


def _cell(x: float | None) -> str:
    if x is None:
        return ""
    return repr(float(x)) if math.isfinite(x) else ("nan" if x != x else ("inf" if x > 0 else "-inf"))


def export_csv(history: History, out: Path, batches: bool = False) -> list[Path]:
    """``out/epochs.csv`` (and ``out/batches.csv``); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    metric_names = sorted({k for e in history.epochs for k in e.metrics})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EPOCH_COLUMNS + metric_names)
    for e in history.epochs:
        writer.writerow(
            [e.epoch, e.step, _cell(e.train_loss), _cell(e.val_loss), _cell(e.lr),
             _cell(e.seconds), _cell(e.samples_per_s)]
            + [_cell(e.metrics.get(k)) for k in metric_names]
        )
    written = [out / "epochs.csv"]
    data = buf.getvalue().encode()
    atomic_write(written[0], lambda fh: fh.write(data))
    if batches:
        path = out / "batches.csv"
        ends = [e.step for e in history.epochs]

        def write(fh) -> None:  # noqa: ANN001
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            rows = csv.writer(text, lineterminator="\n")
            rows.writerow(["step", "epoch", "loss", "lr"])
            epoch = 0
            for step, loss in enumerate(history.losses):
                while epoch < len(ends) and step >= ends[epoch]:
                    epoch += 1
                lr = history.lrs[step] if step < len(history.lrs) else math.nan
                rows.writerow([step, epoch + 1, _cell(loss), _cell(lr)])
            text.flush()
            text.detach()

        atomic_write(path, write)
        written.append(path)
    return written


def _run_record(history: History) -> str:
    """The run's start (as if it had run in one go), schedule changes and end, as JSON lines."""
    lines = []
    if history.run is not None:
        start = dataclasses.replace(history.run, start_epoch=0, global_step=0)
        lines.append(json.dumps(to_json(start), separators=(",", ":")))
    for change in history.schedule_changes:
        lines.append(json.dumps(to_json(change), separators=(",", ":")))
    if history.end is not None:
        lines.append(json.dumps(to_json(history.end), separators=(",", ":")))
    return "```\n" + "\n".join(lines) + "\n```"


def export_tensorboard(history: History, alerts: list, out: Path) -> Path:
    """Event files for ``tensorboard --logdir OUT``; returns ``out``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ExportError(
            "the TensorBoard export needs the tensorboard package: pip install 'cosinetui[tensorboard]'"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    if any("tfevents" in p.name for p in out.iterdir()):
        raise ExportError(f"{out} already holds TensorBoard event files; remove them or pass --out")
    writer = SummaryWriter(log_dir=str(out))

    def scalar(tag: str, value: float, step: int) -> None:
        writer.add_scalar(tag, value, step, new_style=True, double_precision=True)

    try:
        if isinstance(history.run, RunStarted) and history.run.schedule is not None:
            writer.add_text("cosinetui/run", _run_record(history), 0)
        lrs = history.lrs
        for step, loss in enumerate(history.losses):
            scalar("batch/loss", loss, step)
            if step < len(lrs) and lrs[step] == lrs[step]:
                scalar("batch/lr", lrs[step], step)
        epoch_step = {}
        for e in history.epochs:
            step = max(e.step - 1, 0)  # the last batch's step, as Lightning logs epoch values
            epoch_step[e.epoch] = step
            scalar("epoch", float(e.epoch), step)
            scalar("epoch/train_loss", e.train_loss, step)
            if e.val_loss is not None:
                scalar("epoch/val_loss", e.val_loss, step)
            if math.isfinite(e.lr):
                scalar("epoch/lr", e.lr, step)
            if e.seconds:
                scalar("epoch/seconds", e.seconds, step)
            for name, value in sorted(e.metrics.items()):
                if value is not None:
                    scalar(f"metrics/{name}", float(value), step)
        texts: dict[int, list[str]] = {}
        for alert in alerts:
            where = f"epoch {alert.epoch}" + (f", step {alert.step}" if alert.step is not None else "")
            text = f"**{alert.severity.upper()}** {alert.kind}, {where}: {alert.message}"
            if alert.suggestion:
                text += f"  \n→ {alert.suggestion}"
            step = alert.step if alert.step is not None else epoch_step.get(alert.epoch, 0)
            texts.setdefault(step, []).append(text)
        for step, items in sorted(texts.items()):  # one text a step: TensorBoard shows one
            writer.add_text("alerts", "\n\n".join(items), step)
    finally:
        writer.close()
    return out
