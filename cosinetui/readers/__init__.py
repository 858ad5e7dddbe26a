"""Reading runs whatever wrote them: cosinetui's own metrics log, a TensorBoard log directory
or event file, a Lightning ``CSVLogger`` metrics.csv. All come back as the same events.

``read_run(path)`` -> ``LogRead`` (events and the problems met); ``read_scalars(path)`` -> the
raw scalar series of another tool's log (for ``--list-tags``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from cosinetui.events import EpochEnd, Finished, RunStarted, from_json
from cosinetui.readers.scalars import (
    ReaderError,
    Scalars,
    TagChoice,
    choose_tags,
    describe,
    to_events,
)
from cosinetui.store import METRICS, LogRead, RunDirError, read_log

CSV_NAME = "metrics.csv"
RUN_TEXT = "cosinetui/run"  # what `cosinetui export --format tensorboard` records of the run
MAX_DEPTH = 4

__all__ = [
    "ReaderError",
    "Scalars",
    "TagChoice",
    "choose_tags",
    "describe",
    "kind_of",
    "read_run",
    "read_scalars",
    "without_missing_train",
]


def _log_in(directory: Path) -> str | None:
    from cosinetui.readers.tensorboard import is_event_file

    if (directory / METRICS).is_file():
        return "metrics"
    csv_file = directory / CSV_NAME
    if csv_file.is_file() and not csv_file.is_symlink():
        return "csv"
    try:
        if any(is_event_file(p) for p in directory.iterdir()):
            return "tensorboard"
    except OSError:
        pass
    return None


def _runs_below(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink())
        if len(here.relative_to(root).parts) >= MAX_DEPTH:
            dirnames[:] = []
        if here != root and _log_in(here):
            found.append(here)
            dirnames[:] = []
    return found


def kind_of(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """("metrics" | "csv" | "tensorboard", the file or directory to read) for ``path``."""
    p = Path(path)
    if not p.exists():
        raise ReaderError(f"{path}: no such file or directory")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv", p
        if "tfevents" in p.name:
            return "tensorboard", p
        return "metrics", p
    if os.path.lexists(p / METRICS) and not (p / METRICS).is_file():
        raise ReaderError(f"{p / METRICS}: not a regular file")
    kind = _log_in(p)
    if kind is not None:
        return kind, (p / CSV_NAME if kind == "csv" else p)
    below = _runs_below(p)
    if len(below) == 1:
        return kind_of(below[0])
    if not below:
        raise ReaderError(
            f"{path}: no {METRICS}, and no TensorBoard event files (events.out.tfevents.*) or "
            f"Lightning {CSV_NAME} in it or below it: not a run"
        )
    listed = "\n  ".join(str(d) for d in below[:20])
    more = f"\n  ... and {len(below) - 20} more" if len(below) > 20 else ""
    raise ReaderError(f"{path} holds {len(below)} runs; name one of them:\n  {listed}{more}")


def read_scalars(path: str | os.PathLike[str]) -> Scalars:
    kind, p = kind_of(path)
    if kind == "csv":
        from cosinetui.readers.lightning_csv import read_csv

        return read_csv(p)
    if kind == "tensorboard":
        from cosinetui.readers.tensorboard import read_tensorboard

        return read_tensorboard(p)
    raise ReaderError(f"{path}: a cosinetui metrics log, not a TensorBoard or CSV log")


def read_run(
    path: str | os.PathLike[str],
    train: str | None = None,
    val: str | None = None,
    lr: str | None = None,
) -> LogRead:
    """The events of any run ``path`` names. Raises ReaderError (or RunDirError) when it
    cannot be read at all; lines or records skipped are listed in ``problems``."""
    try:
        return _read_run(path, train, val, lr)
    except PermissionError as exc:  # another user's run: one line, as ls says it
        raise ReaderError(f"{exc.filename or path}: not readable (permission denied)") from None


def _read_run(path: str | os.PathLike[str], train: str | None, val: str | None, lr: str | None) -> LogRead:
    kind, p = kind_of(path)
    if kind == "metrics":
        if train or val or lr:
            raise ReaderError("--train, --val and --lr name tags of TensorBoard and CSV logs; "
                              f"{path} is a cosinetui run")
        return read_log(p)
    scalars = read_scalars(p)
    choice = choose_tags(scalars, train, val, lr)
    events = to_events(scalars, choice)
    if not any((choice.train_step, choice.train_epoch, choice.val, choice.lr)):
        have = ", ".join(sorted(scalars.series)[:20]) or "none"
        raise ReaderError(
            f"{path}: found no train loss, val loss or LR among its scalars ({have}); "
            "name them with --train, --val and --lr (--list-tags shows them all)"
        )
    problems = list(scalars.problems)
    recorded = scalars.texts.get(RUN_TEXT)
    if recorded:
        events = _with_run_record(events, recorded[-1][1], problems)
    return LogRead(events, problems)


def without_missing_train(alerts: list, events: list) -> list:
    """The alerts less the "train loss is not a number" ones of a log that holds no train loss
    at all (a val-only log): its epoch records carry NaN there for "not recorded"."""
    start = events[0] if events and isinstance(events[0], RunStarted) else None
    tags = (start.config or {}).get("tags") if start is not None and start.config else None
    if not isinstance(tags, dict) or tags.get("train_step") or tags.get("train_epoch"):
        return alerts
    return [a for a in alerts if not (a.kind == "nan" and a.step is None and a.message.startswith("train loss"))]


def _with_run_record(events: list, text: str, problems: list[str]) -> list:
    """An export of a cosinetui run carries its run_started, schedule changes and end as JSON
    lines: put them back, so the run reads as it was (schedule, planned epochs, interval)."""
    recorded = []
    for line in text.strip("`\n ").splitlines():
        try:
            data = json.loads(line)
            if isinstance(data, dict):
                recorded.append(from_json(data))
        except (ValueError, TypeError, RecursionError) as exc:
            problems.append(f"{RUN_TEXT}: skipped a record: {str(exc)[:200]}")
    starts = [e for e in recorded if isinstance(e, RunStarted)]
    if not starts:
        return events
    middle = [e for e in recorded if e.type == "schedule"]
    ends = [e for e in recorded if isinstance(e, Finished) or e.type == "failed"]
    body = [_as_recorded(e) for e in events if not isinstance(e, RunStarted)]
    return [starts[-1], *middle, *body, *ends]


def _as_recorded(event):  # noqa: ANN001, ANN202
    """An epoch record of an export with its fields and metric names as the run had them."""
    if not isinstance(event, EpochEnd):
        return event
    metrics = dict(event.metrics)
    seconds = metrics.pop("epoch/seconds", event.seconds)
    lr = metrics.pop("epoch/lr", event.lr)
    metrics = {k.removeprefix("metrics/"): v for k, v in metrics.items()}
    return dataclasses.replace(event, seconds=seconds, lr=lr, metrics=metrics)


__all__ += ["RunDirError"]
