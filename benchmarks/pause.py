"""Pause latency: from session.send(Pause()) to the trainer thread blocked.

A TrainerSession trains in its thread (no UI; the dashboard's pause key calls the same
session.send). At random moments the main thread sends Pause and records the time and the
trainer's global step; the trainer's wake-up Event is wrapped to record when the thread starts
waiting on it. Reported per model: batches trained after the command (Paused.step minus the
step at the send) and milliseconds to (1) the Paused event and (2) the thread blocked, which
comes after the pause checkpoint is written (fsync included). Then Resume, and again.

    .venv/bin/python benchmarks/pause.py
    .venv/bin/python benchmarks/pause.py --pauses 20 --models small,mid,large
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import experiments  # noqa: E402
import torch  # noqa: E402
from _util import machine, table  # noqa: E402


class RecordingEvent(threading.Event):
    """The trainer's wake-up Event, noting when the trainer starts to block on it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked_at: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.blocked_at.append(time.perf_counter())
        return super().wait(timeout)


def measure(name: str, pauses: int) -> dict[str, list[float]]:
    from cosinetui.events import Pause, Paused, Resume
    from cosinetui.session import TrainerSession
    from cosinetui.trainer import TrainerOptions

    run_dir = Path(tempfile.mkdtemp(prefix="ctb"))
    exp = experiments.build(name, epochs=1000)
    session = TrainerSession(exp, TrainerOptions(run_dir=run_dir, device="cpu", on_nan="stop"))
    trainer = session.trainer
    wake = trainer._wake = RecordingEvent()
    paused_at: list[tuple[float, int]] = []
    trainer.listeners.append(
        lambda e: paused_at.append((time.perf_counter(), e.step)) if isinstance(e, Paused) else None
    )
    out: dict[str, list[float]] = {"batches": [], "event_ms": [], "blocked_ms": []}
    rng = random.Random(0)
    session.start()
    try:
        while trainer.step < 20:
            time.sleep(0.01)
        for _ in range(pauses):
            time.sleep(0.2 + 0.3 * rng.random())
            blocked_before = len(wake.blocked_at)
            step, sent = trainer.step, time.perf_counter()
            session.send(Pause())
            while len(wake.blocked_at) == blocked_before:
                time.sleep(0.0005)
            at, paused_step = paused_at[-1]
            out["batches"].append(paused_step - step)
            out["event_ms"].append((at - sent) * 1e3)
            out["blocked_ms"].append((wake.blocked_at[-1] - sent) * 1e3)
            session.send(Resume())
    finally:
        trainer.request_stop("benchmark")
        session.wait(60)
        shutil.rmtree(run_dir, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="small,mid")
    ap.add_argument("--pauses", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# pause: {machine(args.threads)}")
    rows = []
    for name in args.models.split(","):
        out = measure(name, args.pauses)
        rows.append([
            name, args.pauses,
            f"{statistics.median(out['batches']):.0f} (max {max(out['batches']):.0f})",
            statistics.median(out["event_ms"]), max(out["event_ms"]),
            statistics.median(out["blocked_ms"]), max(out["blocked_ms"]),
        ])
    print(table(["model", "pauses", "batches after command", "ms to Paused (median)", "max",
                 "ms to blocked (median)", "max"], rows))


if __name__ == "__main__":
    main()
