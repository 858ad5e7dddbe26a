"""What to print when the dashboard closes: where the run is, and the command that comes next.

Pure: built from the run's History, so the dashboard of `cosinetui run`, of `attach` and the
tests all say the same thing.
"""

from __future__ import annotations

import math

from cosinetui.history import History


def _loss(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def _further(history: History, where: str, total: int) -> str:
    if history.run is not None and history.run.loop == "track":  # the script sets the length
        return f"  train further:    raise the epochs your script gives track(), then cosinetui resume {where}"
    return f"  train further:    cosinetui resume {where} --epochs {total + max(total // 2, 1)}"


def leaving_lines(
    history: History, *, running: bool, pid: int | None = None, run_dir: str | None = None
) -> list[str]:
    """Lines for the terminal once the dashboard is gone; empty when there is no run.

    ``running``: the run trains on without this dashboard (it detached, or was only attached).
    """
    where = run_dir or (history.run.run_dir if history.run else None)
    if not where:
        if running and pid and history.end is None:  # left before the trainer was up
            return [
                f"the run is still starting in the background (pid {pid})",
                "  find it with:     cosinetui ls",
            ]
        return []
    name = history.run.run_name if history.run else where
    done, total = history.epochs_done, history.total_epochs
    if running and history.end is None:
        who = f" (pid {pid})" if pid else ""
        return [
            f"{name} trains on in the background{who}: epoch {done}/{total}, {where}",
            f"  watch and steer:  cosinetui attach {where}",
        ]
    end = history.end
    steps = max(history.step, getattr(end, "step", 0))
    if history.state == "finished":
        best = history.best_epoch
        summary = f"{name} finished: {done} epochs, {steps:,} steps"
        if best is not None:
            summary += f"; best val {_loss(best.val_loss)} at epoch {best.epoch}"
        elif history.epochs:
            summary += f"; last train loss {_loss(history.epochs[-1].train_loss)}"
        return [
            summary,
            f"  run directory:    {where}",
            f"  open the record:  cosinetui show {where}",
            _further(history, where, total),
        ]
    if history.state == "failed":
        error = getattr(end, "error", "")
        lines = [f"{name} failed at epoch {done + 1}/{total}: {error}", f"  run directory:    {where}"]
        if history.last_checkpoint is not None:
            lines.append(f"  resume:           cosinetui resume {where}")
        return lines
    # stopped (or the dashboard left before the stop was acknowledged)
    return [
        f"{name} stopped at epoch {done}/{total}, step {steps:,}; checkpoint in {where}",
        f"  continue:         cosinetui resume {where}",
    ]
