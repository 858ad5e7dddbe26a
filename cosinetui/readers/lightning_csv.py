"""A Lightning ``CSVLogger`` metrics.csv -> ``Scalars``.

Lightning writes one row per logging call: an ``epoch`` and a ``step`` column, then one column
per metric, empty where that call did not log it (per-step rows, per-epoch rows, validation
rows, LearningRateMonitor rows without an epoch). Any CSV with a header works the same way;
without a ``step`` column the row number is the step.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from cosinetui.readers.scalars import ReaderError, Scalars, run_name


def _number(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _integer(text: str | None) -> int | None:
    x = _number(text or "")
    if x is None or not math.isfinite(x) or x != int(x):
        return None
    return int(x)


def read_csv(path: str | os.PathLike[str]) -> Scalars:
    p = Path(path)
    out = Scalars("lightning-csv", run_name(p), str(path))
    values: dict[str, dict[int, float]] = {}
    try:
        with open(p, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            if not columns:
                raise ReaderError(f"{path}: empty CSV (expected a header row)")
            lower = {c.lower(): c for c in columns if c}
            step_col, epoch_col = lower.get("step"), lower.get("epoch")
            metrics = [c for c in columns if c and c not in (step_col, epoch_col)]
            for number, row in enumerate(reader):
                step = _integer(row.get(step_col)) if step_col else number
                if step is None:
                    out.problems.append(f"{path}:{number + 2}: skipped: no integer step")
                    continue
                epoch = _integer(row.get(epoch_col)) if epoch_col else None
                if epoch is not None:
                    out.epoch_of_step[step] = epoch
                for column in metrics:
                    x = _number(row.get(column) or "")
                    if x is not None:
                        values.setdefault(column, {})[step] = x
    except FileNotFoundError:
        raise ReaderError(f"{path}: no such file") from None
    except (OSError, csv.Error) as exc:
        raise ReaderError(f"{path}: cannot read ({exc})") from None
    for tag, by_step in values.items():
        out.series[tag] = sorted(by_step.items())
    return out
