"""Finding and summarising run directories (`cosinetui ls`, `attach` without a directory)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from cosinetui import store
from cosinetui.history import History


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    state: str  # live, finished, stopped, failed, interrupted, crashed
    epoch: int
    epochs: int
    best_val: float | None
    started: float  # Unix time of the first run_started, or the directory's mtime


def run_dirs(root: str | os.PathLike[str]) -> list[Path]:
    """Directories under ``root`` that hold a metrics log, newest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = [d for d in base.iterdir() if (d / store.METRICS).is_file()]
    return sorted(found, key=lambda d: (d / store.METRICS).stat().st_mtime, reverse=True)


def summarise(run_dir: Path, live: bool) -> RunSummary:
    log = store.read_log(run_dir)
    if not log.events and log.problems:  # an empty log is a run still starting; garbage is not
        raise store.RunDirError(f"{run_dir}: no readable records in its metrics log")
    history = History.from_events(log.events)
    first = next((e for e in log.events if e.type == "run_started"), None)
    if live:
        state = "live"
    elif history.state in ("finished", "stopped", "failed"):
        state = history.state
    elif not any(e.type == "checkpoint" for e in log.events) and not (run_dir / store.CHECKPOINT).exists():
        state = "crashed"  # killed before its first checkpoint: resume starts it afresh
    else:
        state = "interrupted"  # the process ended without writing how (killed, power cut)
    best = history.best_epoch
    return RunSummary(
        path=run_dir,
        name=history.run.run_name if history.run else run_dir.name,
        state=state,
        epoch=history.epochs_done,
        epochs=history.total_epochs,
        best_val=best.val_loss if best else None,
        started=first.time if first and first.time else (run_dir / store.METRICS).stat().st_mtime,
    )


def format_table(rows: list[RunSummary]) -> str:
    import time

    lines = [f"{'NAME':<20} {'STATE':<11} {'EPOCH':>9} {'BEST VAL':>9}  {'STARTED':<16}  DIRECTORY"]
    for r in rows:
        best = "-" if r.best_val is None or not math.isfinite(r.best_val) else f"{r.best_val:.4g}"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        lines.append(
            f"{r.name[:20]:<20} {r.state:<11} {f'{r.epoch}/{r.epochs}':>9} {best:>9}  {started:<16}  {r.path}"
        )
    if any(r.state == "crashed" for r in rows):
        lines.append(
            "crashed: killed before its first checkpoint; cosinetui resume DIR starts it again from scratch"
        )
    return "\n".join(lines)
